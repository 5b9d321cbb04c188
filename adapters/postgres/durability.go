package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vigilhq/vigil/ledger"
)

// Durability modes of VIGIL_CHECKPOINT_DURABILITY: what must hold an event
// before a checkpoint may cover it.
const (
	// DurableLocal: the primary's own commit (no check; the default).
	DurableLocal = "local"
	// DurableReplica: flushed by every synchronous standby
	// (pg_stat_replication), so that the standby a failover promotes has it.
	DurableReplica = "replica"
	// DurableArchive: in a WAL segment the archiver has archived
	// (pg_stat_archiver), so that a restore to the latest archived point
	// has it.
	DurableArchive = "archive"
)

// Durability implements ledger.Durability over PostgreSQL's WAL: a mark is
// the primary's WAL insert position, read in one statement with the
// tenant's tree size (so it covers every commit that size includes), on
// the primary's timeline; the frontier is the flush position of the
// synchronous standbys, or the end of the last archived segment. Reading
// pg_stat_replication's positions needs a superuser or the pg_monitor role.
type Durability struct {
	pool *pgxpool.Pool
	mode string
}

var _ ledger.Durability = (*Durability)(nil)

// NewDurability returns the check of mode (DurableReplica or
// DurableArchive); nil for DurableLocal or "", which checks nothing.
func NewDurability(pool *pgxpool.Pool, mode string) (*Durability, error) {
	switch mode {
	case "", DurableLocal:
		return nil, nil
	case DurableReplica, DurableArchive:
		return &Durability{pool: pool, mode: mode}, nil
	}
	return nil, fmt.Errorf("checkpoint durability %q: want local, replica or archive", mode)
}

// Mark implements ledger.Durability.
func (d *Durability) Mark(ctx context.Context, tenant string) (int64, ledger.DurableMark, error) {
	var size int64
	var m ledger.DurableMark
	var pos int64
	err := d.pool.QueryRow(ctx, `SELECT coalesce((SELECT size FROM tenant_logs WHERE tenant = $1), 0),
			substr(pg_walfile_name(l), 1, 8), (l - '0/0'::pg_lsn)::bigint
		FROM pg_current_wal_insert_lsn() l`, tenant).Scan(&size, &m.Epoch, &pos)
	if err != nil {
		return 0, m, fmt.Errorf("durability mark: %w", unavailable(err))
	}
	m.Pos = uint64(pos)
	return size, m, nil
}

// Frontier implements ledger.Durability. With no synchronous standby
// streaming (replica) or nothing archived on this timeline yet (archive),
// it is the start of the timeline: nothing new is durable.
func (d *Durability) Frontier(ctx context.Context) (ledger.DurableMark, error) {
	var f ledger.DurableMark
	switch d.mode {
	case DurableReplica:
		var pos *int64
		err := d.pool.QueryRow(ctx, `SELECT substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8),
				(SELECT (min(flush_lsn) - '0/0'::pg_lsn)::bigint FROM pg_stat_replication
					WHERE sync_state IN ('sync', 'quorum') AND flush_lsn IS NOT NULL)`).Scan(&f.Epoch, &pos)
		if err != nil {
			return f, fmt.Errorf("durability frontier: %w", unavailable(err))
		}
		if pos != nil {
			f.Pos = uint64(*pos)
		}
		return f, nil
	case DurableArchive:
		var last *string
		var segSize int64
		err := d.pool.QueryRow(ctx, `SELECT substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8),
				(SELECT last_archived_wal FROM pg_stat_archiver),
				(SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size')`).Scan(&f.Epoch, &last, &segSize)
		if err != nil {
			return f, fmt.Errorf("durability frontier: %w", unavailable(err))
		}
		if last != nil {
			f.Pos = archivedEnd(*last, f.Epoch, segSize)
		}
		return f, nil
	}
	return f, errors.New("durability frontier: no mode")
}

// archivedEnd is the WAL position up to which segment file name (as
// pg_stat_archiver.last_archived_wal names it) holds the timeline epoch's
// history: the end of the segment, or 0 when name is no segment of that
// timeline (a .history or .backup file, an older timeline's segment).
func archivedEnd(name, epoch string, segSize int64) uint64 {
	if len(name) != 24 || name[:8] != epoch || segSize <= 0 {
		return 0
	}
	hi, err1 := strconv.ParseUint(name[8:16], 16, 32)
	lo, err2 := strconv.ParseUint(name[16:24], 16, 32)
	if err1 != nil || err2 != nil {
		return 0
	}
	perLog := uint64(0x100000000) / uint64(segSize)
	seg := hi*perLog + lo
	return (seg + 1) * uint64(segSize)
}
