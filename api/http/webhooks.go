package httpapi

import "net/http"

// WebhooksService is what the webhook subscription endpoints need. Filled
// in by the webhooks work (issue 8).
type WebhooksService interface{}

// webhooksRoutes registers the webhook endpoints when opts.Webhooks is set.
func (a *api) webhooksRoutes(mux *http.ServeMux) {}
