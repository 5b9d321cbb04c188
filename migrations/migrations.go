// Package migrations embeds Vigil's numbered SQL migrations, applied with
// goose by `vigil migrate`, by `vigil serve` at start, and by the tests.
package migrations

import "embed"

// FS holds the *.sql migrations in version order.
//
//go:embed *.sql
var FS embed.FS
