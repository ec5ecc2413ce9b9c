package main

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkey/latchkey/plugin"
)

func TestWatchParent(t *testing.T) {
	var ppid atomic.Int32
	ppid.Store(4242)
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	done := make(chan struct{})
	go func() {
		watchParent(ctx, cancel, 4242, func() int { return int(ppid.Load()) }, time.Millisecond)
		close(done)
	}()
	select {
	case <-ctx.Done():
		t.Fatal("cancelled while the parent is there")
	case <-time.After(20 * time.Millisecond):
	}
	ppid.Store(1) // reparented to init
	<-done
	if !errors.Is(context.Cause(ctx), plugin.ErrCallerGone) {
		t.Errorf("cause = %v, want ErrCallerGone", context.Cause(ctx))
	}
}
