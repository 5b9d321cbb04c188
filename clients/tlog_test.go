package clients_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tdlog "github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// tileReader reads a tenant's hash tiles over HTTP in the C2SP tlog-tiles
// layout (tile/<L>/<N>[.p/<W>], height 8), as any tlog client would.
type tileReader struct {
	t        *testing.T
	base     string
	key      string
	requests int
	cache    map[string][]byte
}

func (r *tileReader) Height() int { return 8 }

func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, tile := range tiles {
		// x/mod writes tile/H/L/N…; C2SP leaves the fixed height out.
		p := strings.Replace(tile.Path(), "tile/8/", "tile/", 1)
		if b, ok := r.cache[p]; ok {
			out[i] = b
			continue
		}
		out[i] = get(r.t, r.base+"/v1/tlog/"+p, r.key)
		r.requests++
	}
	return out, nil
}

// SaveTiles keeps the tiles TileHashReader has verified, as a client's
// cache would.
func (r *tileReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {
	if r.cache == nil {
		r.cache = map[string][]byte{}
	}
	for i, tile := range tiles {
		r.cache[strings.Replace(tile.Path(), "tile/8/", "tile/", 1)] = data[i]
	}
}

func toSlices(hs []tlog.Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

// checkpoint fetches and parses the tenant's checkpoint with
// transparency-dev's formats/log, which checks origin and signature.
func checkpoint(t *testing.T, s *server, key, origin string, v note.Verifier) *tdlog.Checkpoint {
	t.Helper()
	raw := get(t, s.URL+"/v1/tlog/checkpoint", key)
	cp, _, _, err := tdlog.ParseCheckpoint(raw, origin, v)
	if err != nil {
		t.Fatalf("formats/log.ParseCheckpoint: %v\n%s", err, raw)
	}
	// The same bytes from the older endpoint.
	if again := get(t, s.URL+"/v1/checkpoints/latest", key); len(again) == 0 {
		t.Fatal("GET /v1/checkpoints/latest: empty")
	}
	return cp
}

// TestTransparencyLog checks Vigil's log with transparency-dev's code: the
// checkpoints parse and verify with formats/log under the tenant's origin,
// and inclusion and consistency proofs built from the served tiles verify
// with merkle/proof against the signed roots.
func TestTransparencyLog(t *testing.T) {
	s := startServe(t, nil)
	tenant, admin := s.tenant(t)
	ingest := s.apiKey(t, tenant, "ingest")
	auditor := s.apiKey(t, tenant, "auditor")

	pub, err := os.ReadFile(filepath.Join(s.DataDir, "signing.key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(strings.TrimSpace(string(pub)))
	if err != nil {
		t.Fatal(err)
	}
	origin := "vigil.local/" + tenant
	// A checkpoint under any other origin is refused by the client.
	s.simulate(t, admin, ingest, 3)

	var first *tdlog.Checkpoint
	eventually(t, 30*time.Second, func() error {
		first = checkpoint(t, s, auditor, origin, verifier)
		if first.Size == 0 {
			return fmt.Errorf("checkpoint size 0")
		}
		return nil
	})
	if _, _, _, err := tdlog.ParseCheckpoint(get(t, s.URL+"/v1/tlog/checkpoint", auditor), "evil.example/"+tenant, verifier); err == nil {
		t.Error("formats/log accepted the checkpoint under another origin")
	}

	// More events, a newer checkpoint.
	s.simulate(t, admin, ingest, 3)
	var second *tdlog.Checkpoint
	eventually(t, 30*time.Second, func() error {
		second = checkpoint(t, s, auditor, origin, verifier)
		if second.Size <= first.Size {
			return fmt.Errorf("checkpoint did not grow past %d", first.Size)
		}
		return nil
	})

	tr := &tileReader{t: t, base: s.URL, key: auditor}
	var root2 tlog.Hash
	copy(root2[:], second.Hash)
	tree2 := tlog.Tree{N: int64(second.Size), Hash: root2}
	hr := tlog.TileHashReader(tree2, tr)

	// Inclusion of every leaf of the second tree (the log is small here),
	// with leaf hashes read from the level-0 tiles.
	for n := int64(0); n < tree2.N; n++ {
		leaf, err := hr.ReadHashes([]int64{tlog.StoredHashIndex(0, n)})
		if err != nil {
			t.Fatalf("leaf %d from tiles: %v", n, err)
		}
		p, err := tlog.ProveRecord(tree2.N, n, hr)
		if err != nil {
			t.Fatalf("prove leaf %d: %v", n, err)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(n), second.Size, leaf[0][:], toSlices(p), second.Hash); err != nil {
			t.Fatalf("merkle/proof.VerifyInclusion(leaf %d of %d): %v", n, second.Size, err)
		}
		// A tampered leaf does not verify.
		bad := leaf[0]
		bad[0] ^= 1
		if proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(n), second.Size, bad[:], toSlices(p), second.Hash) == nil {
			t.Fatalf("a flipped leaf %d verified", n)
		}
	}

	// Consistency of the first checkpoint with the second.
	cp, err := tlog.ProveTree(tree2.N, int64(first.Size), hr)
	if err != nil {
		t.Fatalf("prove consistency %d→%d: %v", first.Size, second.Size, err)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, first.Size, second.Size, toSlices(cp), first.Hash, second.Hash); err != nil {
		t.Fatalf("merkle/proof.VerifyConsistency(%d→%d): %v", first.Size, second.Size, err)
	}
	bad := append([]byte(nil), first.Hash...)
	bad[0] ^= 1
	if proof.VerifyConsistency(rfc6962.DefaultHasher, first.Size, second.Size, toSlices(cp), bad, second.Hash) == nil {
		t.Fatal("consistency verified from a forged old root")
	}
	if tr.requests == 0 {
		t.Fatal("no tile was read")
	}
	t.Logf("checkpoints %d and %d verified with formats/log; %d inclusion proofs and one consistency proof from %d tile reads verified with merkle/proof",
		first.Size, second.Size, tree2.N, tr.requests)
}
