// Module e2e is latchkey's real-world end-to-end suite: Dex, headless
// Chromium, kubectl and kube-apiserver started on loopback. It is a separate
// module so that the main module's go.mod stays lean.
module github.com/latchkey/latchkey/hack/e2e

go 1.26.0

require (
	github.com/chromedp/chromedp v0.23.0
	github.com/google/go-cmp v0.7.0
	golang.org/x/crypto v0.58.0
)

require (
	github.com/chromedp/cdproto v0.159.0 // indirect
	github.com/go-json-experiment/json v0.0.0-20260213210345-44df1a37e875 // indirect
)
