// Package sessionstore declares what the web console (api/console) keeps in
// the database, apart from the console itself, so that the adapter that
// implements it (adapters/postgres) imports no HTTP package: the console
// imports api/http, whose tests import the adapter.
package sessionstore

import (
	"context"
	"time"

	"github.com/vigilhq/vigil/domain/service"
)

// Session is a console sign-in as the Store keeps it.
type Session struct {
	// IDHash is SHA-256 of the cookie's identifying half.
	IDHash       []byte
	Tenant       string
	Role         string
	TechnicianID string
	// Credential is the bearer credential sealed under a key derived from
	// the cookie: useless without it.
	Credential []byte
	CreatedAt  time.Time
	LastSeenAt time.Time
	ExpiresAt  time.Time
}

// Store keeps console sessions where every node reads them.
// ConsoleSession returns domain.ErrNotFound for an unknown id hash.
// Implementations are safe for concurrent use.
type Store interface {
	CreateConsoleSession(ctx context.Context, s Session) error
	ConsoleSession(ctx context.Context, idHash []byte) (Session, error)
	TouchConsoleSession(ctx context.Context, idHash []byte, lastSeen, expiresAt time.Time) error
	DeleteConsoleSession(ctx context.Context, idHash []byte) error
	// PurgeConsoleSessions deletes the sessions that expired before t.
	PurgeConsoleSessions(ctx context.Context, before time.Time) (int64, error)
}

// Directory lists what the Admin Center shows and the service does not
// list: a tenant's API keys (never their secrets), technician ids and
// group ids. Implementations are safe for concurrent use.
type Directory interface {
	APIKeys(ctx context.Context, tenant string) ([]service.APIKey, error)
	TechnicianIDs(ctx context.Context, tenant string) ([]string, error)
	GroupIDs(ctx context.Context, tenant string) ([]string, error)
}
