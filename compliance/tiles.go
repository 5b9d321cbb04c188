package compliance

import (
	"context"
	"fmt"
	"strings"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"golang.org/x/mod/sumdb/tlog"
)

// TileHeight is the height of the Merkle tiles served: 8, as in C2SP
// tlog-tiles (a full tile holds 256 hashes).
const TileHeight = 8

// Tile returns the hash tile at path, a C2SP tlog-tiles path without the
// "tile/" prefix: "<L>/<N>" for a full tile or "<L>/<N>.p/<W>" for a
// partial one, N written in groups of three digits ("x001/234"). The tile
// must lie within the tenant's latest signed checkpoint, so that what a
// client builds from tiles checks against a signed root; full tiles never
// change. Data tiles (entry bundles) are not served: an export carries the
// leaves. It returns an error of code invalid for a malformed path and
// not_found for a tile past the checkpoint.
func (a *Auditor) Tile(ctx context.Context, tenant, path string) ([]byte, error) {
	if strings.HasPrefix(path, "entries/") {
		return nil, domain.Errorf(domain.CodeNotFound, "entry bundles are not served: export the log for its leaves")
	}
	t, err := tlog.ParseTilePath(fmt.Sprintf("tile/%d/%s", TileHeight, path))
	if err != nil || t.L < 0 {
		return nil, domain.Errorf(domain.CodeInvalid, "%q is not a tile path (<L>/<N>[.p/<W>])", path)
	}
	c, err := a.LatestCheckpoint(ctx, tenant)
	if err != nil {
		return nil, err
	}
	// The tile's hashes are at tree level L*H, indexes N*2^H to
	// N*2^H+W-1; each covers 2^(L*H) leaves.
	// Level 6 hashes already cover 2^48 leaves each; higher levels, and
	// indexes whose leaf count would not fit in an int64, are past any log.
	levelShift := uint(t.L * t.H)
	if t.L > 6 || t.N >= int64(1)<<(62-levelShift-uint(t.H)) {
		return nil, domain.Errorf(domain.CodeNotFound, "tile %s is past the latest checkpoint", path)
	}
	covered := (t.N<<uint(t.H) + int64(t.W)) << levelShift
	if covered > c.Size {
		return nil, domain.Errorf(domain.CodeNotFound, "tile %s covers %d leaves, past the latest checkpoint of %d", path, covered, c.Size)
	}
	data, err := tlog.ReadTileData(t, ledger.HashReader{Ctx: ctx, Store: a.st, Tenant: tenant})
	if err != nil {
		return nil, fmt.Errorf("tile %s of %s: %w", path, tenant, err)
	}
	return data, nil
}
