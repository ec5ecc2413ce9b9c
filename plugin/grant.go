package plugin

import (
	"context"
	"net/http"

	"github.com/latchkey/latchkey/cache"
)

// login obtains new tokens from the person, with the grant the options ask
// for, and returns the new entry.
func (c *Client) login(ctx context.Context, hc *http.Client, p *cache.Provider) (*cache.Entry, error) {
	return c.authCodeLogin(ctx, hc, p)
}
