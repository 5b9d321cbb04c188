package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vigilhq/vigil/adapters/keys"
	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/projections"
)

// system is the wired core: database, keys, store, sealer and ledger.
type system struct {
	cfg   *Config
	log   *slog.Logger
	pool  *pgxpool.Pool
	store *postgres.Store // identity, reports, subject keys; the log too by default
	// logStore keeps the ledger's log: store itself, or KurrentDB.
	logStore ledger.Store
	closeLog func()
	keys     keys.Material
	sealer   *ledger.Sealer
	ledger   *ledger.Ledger
	service  *service.Service
	blobs    blobStore           // opened on first use (recordings_wire.go)
	recs     *service.Recordings // opened on first use
}

// open connects to the database (creating it if missing), applies the
// migrations when migrate is set, loads the keys (never generating them:
// see openServe) and builds the ledger (not yet running). Close releases it
// all.
func open(ctx context.Context, cfg *Config, log *slog.Logger, migrate bool) (*system, error) {
	return openSystem(ctx, cfg, log, openOptions{migrate: migrate})
}

// openServe opens the system for serve: migrated, with keys generated
// into the data dir in development when none exist (serve is the only
// command that may generate them), and the signing key checked against
// the ones the log accepts.
func openServe(ctx context.Context, cfg *Config, log *slog.Logger) (*system, error) {
	return openSystem(ctx, cfg, log, openOptions{migrate: true, generateKeys: !cfg.Production(), checkSigner: true})
}

type openOptions struct {
	migrate      bool
	generateKeys bool // only serve, in development
	checkSigner  bool // refuse now a signing key the log does not accept
}

func openSystem(ctx context.Context, cfg *Config, log *slog.Logger, o openOptions) (*system, error) {
	// Keys first: a command run from the wrong folder must refuse before
	// it touches the database.
	m, err := loadKeys(cfg, log, false)
	missing := err
	if err != nil && !(o.generateKeys && errors.Is(err, keys.ErrNoKeys)) {
		return nil, err
	}
	pool, err := postgres.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("%w (database %s)", err, postgres.Redact(cfg.DatabaseURL))
	}
	s := &system{cfg: cfg, log: log, pool: pool}
	if o.migrate {
		applied, err := postgres.Migrate(ctx, pool)
		if err != nil {
			pool.Close()
			return nil, err
		}
		if len(applied) > 0 {
			log.Info("migrations applied", "versions", applied)
		}
	}
	if missing != nil {
		// Generate only for a database without a log: keys made now
		// could never sign one that has (serve from the wrong folder).
		if err := refuseGenerating(ctx, pool, cfg, missing); err != nil {
			pool.Close()
			return nil, err
		}
		if m, err = loadKeys(cfg, log, true); err != nil {
			pool.Close()
			return nil, err
		}
	}
	s.keys = m
	pgOpts := postgres.Options{Logger: log}
	if cfg.LogStore == "kurrentdb" {
		pgOpts.LogHead = func(ctx context.Context) (int64, error) { return s.logStore.Head(ctx) }
	}
	s.store = postgres.NewStore(pool, pgOpts)
	if s.logStore, s.closeLog, err = openLogStore(ctx, cfg, s.store, log); err != nil {
		pool.Close()
		return nil, err
	}
	s.sealer = ledger.NewSealer(s.store, s.keys.Ring, 0)
	s.store.OnKeyDestroyed(s.sealer.Invalidate)
	var durability ledger.Durability
	if d, err := postgres.NewDurability(pool, cfg.CheckpointDurability); err != nil {
		s.Close()
		return nil, err
	} else if d != nil {
		durability = d
	}
	s.ledger = ledger.New(s.logStore, s.sealer, s.keys.Signer, ledger.Options{
		Durability:         durability,
		Origin:             cfg.LogOrigin,
		CheckpointInterval: cfg.CheckpointInterval,
		Logger:             log,
		Signers:            s.store, // in PostgreSQL whatever the log store
		VerifierKey:        s.keys.VerifierKey,
		SignerDescription:  signerDescription(cfg),
	})
	if o.checkSigner {
		if err := s.ledger.CheckSigner(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	s.service = service.New(service.Config{
		Log:         s.ledger,
		Identity:    s.store,
		Idempotency: s.store,
		Activity:    s.store,
		Crypto:      s.sealer,
		Region:      cfg.Region,
		Logger:      log,
	})
	return s, nil
}

// projector returns the runner of Vigil's projections; linger is
// projections.Options.Linger (VIGIL_PROJECTION_LINGER for serve).
func (s *system) projector(linger time.Duration) *projections.Runner {
	return projections.NewRunner(s.pool, s.logStore, projections.Options{Logger: s.log, AfterRebuild: compliance.PurgeAfterRebuild, Linger: linger},
		projections.NewReporting(s.sealer), projections.NewSubjects())
}

// openService opens the system for a command that appends: migrated, with
// the ledger's writer running. Close stops it after committing.
func openService(ctx context.Context, cfg *Config, stderr io.Writer) (*system, error) {
	sys, err := openSystem(ctx, cfg, newLogger(stderr, cfg.LogLevel), openOptions{migrate: true, checkSigner: true})
	if err != nil {
		return nil, err
	}
	go sys.ledger.Run(context.WithoutCancel(ctx))
	return sys, nil
}

// loadKeys loads the configured keys, or those of the data dir; with
// generate, missing ones are generated there.
func loadKeys(cfg *Config, log *slog.Logger, generate bool) (keys.Material, error) {
	m, err := keys.Load(keys.Config{
		MasterKey:          cfg.MasterKey,
		MasterKeyFile:      cfg.MasterKeyFile,
		PreviousMasterKeys: cfg.previousKeys(),
		SigningKeyFile:     cfg.SigningKeyFile,
		DataDir:            cfg.DataDir,
		Generate:           generate,
		Production:         cfg.Production(),
		SignerName:         cfg.LogOrigin,
	})
	if err != nil {
		return m, err
	}
	if len(m.Generated) > 0 {
		log.Warn(strings.Repeat("!", 72))
		log.Warn("NO KEYS WERE CONFIGURED: generated new ones for development. Back them up apart from the database; losing the master key loses every sealed field, and keeping it beside database backups defeats erasure. Production (VIGIL_ENV=production) refuses to start without configured keys.",
			"files", m.Generated)
		log.Warn("checkpoint verifier key (also: vigil keys public)", "key", m.VerifierKey)
		log.Warn(strings.Repeat("!", 72))
	}
	return m, nil
}

// refuseGenerating returns missing, explained, when the database already
// holds a signed log (a pinned key or a checkpoint), and nil when keys may
// be generated for it.
func refuseGenerating(ctx context.Context, pool *pgxpool.Pool, cfg *Config, missing error) error {
	var pinned []string
	var checkpoints bool
	err := pool.QueryRow(ctx, `SELECT
		coalesce((SELECT array_agg(verifier_key ORDER BY added_at) FROM checkpoint_signers), '{}'),
		EXISTS (SELECT 1 FROM checkpoints)`).Scan(&pinned, &checkpoints)
	if err != nil {
		return fmt.Errorf("%w (and the database %s could not be checked for a log: %v)", missing, postgres.Redact(cfg.DatabaseURL), err)
	}
	switch {
	case len(pinned) > 0:
		return fmt.Errorf("%w. Not generating: the database %s holds a log signed by %s, which new keys could never sign", missing, postgres.Redact(cfg.DatabaseURL), strings.Join(pinned, ", "))
	case checkpoints:
		return fmt.Errorf("%w. Not generating: the database %s holds a signed log, which new keys could never sign", missing, postgres.Redact(cfg.DatabaseURL))
	}
	return nil
}

// signerDescription says where this process's signing key comes from, for
// the record of a key the ledger pins.
func signerDescription(cfg *Config) string {
	host, _ := os.Hostname()
	path, err := filepath.Abs(signingKeyPath(cfg))
	if err != nil {
		path = signingKeyPath(cfg)
	}
	return host + ":" + path
}

// Close stops the ledger (committing what is queued) and releases the
// database.
func (s *system) Close() {
	if s.ledger != nil {
		s.ledger.Close()
	}
	if s.closeLog != nil {
		s.closeLog()
	}
	if s.store != nil {
		s.store.Close()
	}
	s.pool.Close()
}

// signingKeyPath returns the configured or default signing key file.
func signingKeyPath(cfg *Config) string {
	if cfg.SigningKeyFile != "" {
		return cfg.SigningKeyFile
	}
	return filepath.Join(cfg.DataDir, keys.DefaultSigningKeyFile)
}
