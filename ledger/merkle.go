package ledger

import (
	"fmt"
	"math/bits"

	"golang.org/x/mod/sumdb/tlog"
)

// Frontier is the right edge of an RFC 6962 Merkle tree: for each set bit L of
// the tree size, the root of the complete subtree of 2^L leaves at that level.
// It is all that is needed to append a leaf, to produce the stored hashes of
// golang.org/x/mod/sumdb/tlog for it, and to compute the tree hash, in
// O(log n) memory. The zero value is an empty tree. A Frontier is not safe
// for concurrent use.
type Frontier struct {
	size  int64
	nodes [64]tlog.Hash // nodes[L] is valid when bit L of size is set
}

// Size returns the number of leaves appended.
func (f *Frontier) Size() int64 { return f.size }

// Append adds a leaf with the given leaf hash and returns the hashes that
// tlog stores for it, in the order of their stored-hash indexes starting at
// tlog.StoredHashIndex(0, n) for n = the leaf's index. The result equals
// tlog.StoredHashesForRecordHash(n, leaf, r) for any reader r of the same
// tree, and is appended to dst.
func (f *Frontier) Append(dst []tlog.Hash, leaf tlog.Hash) []tlog.Hash {
	n := f.size
	h := leaf
	dst = append(dst, h)
	level := 0
	for ; n&(1<<level) != 0; level++ {
		h = tlog.NodeHash(f.nodes[level], h)
		// The subtree at this level is now inside a larger one; clear it
		// so that equal trees have equal frontiers.
		f.nodes[level] = tlog.Hash{}
		dst = append(dst, h)
	}
	f.nodes[level] = h
	f.size++
	return dst
}

// Root returns the RFC 6962 tree hash of the leaves appended so far; the hash
// of an empty tree is the zero hash, as in tlog.TreeHash.
func (f *Frontier) Root() tlog.Hash {
	if f.size == 0 {
		return tlog.Hash{}
	}
	var h tlog.Hash
	first := true
	for level := 0; level < 64; level++ {
		if f.size&(1<<level) == 0 {
			continue
		}
		if first {
			h = f.nodes[level]
			first = false
			continue
		}
		h = tlog.NodeHash(f.nodes[level], h)
	}
	return h
}

// FrontierIndexes returns the stored-hash indexes that LoadFrontier needs to
// rebuild the frontier of a tree of size n, one per set bit, lowest level
// first.
func FrontierIndexes(n int64) []int64 {
	out := make([]int64, 0, bits.OnesCount64(uint64(n)))
	for level := 0; level < 64; level++ {
		if n&(1<<level) == 0 {
			continue
		}
		// The complete subtree at this level covers the leaves just before
		// the smaller subtrees to its right; its index at that level is the
		// count of leaves to its left, divided by its width.
		start := (n >> (level + 1)) << (level + 1) // leaves left of this subtree
		out = append(out, tlog.StoredHashIndex(level, start>>level))
	}
	return out
}

// LoadFrontier rebuilds the frontier of a tree of size n from its stored
// hashes, as returned for FrontierIndexes(n) in the same order.
func LoadFrontier(n int64, hashes []tlog.Hash) (Frontier, error) {
	want := bits.OnesCount64(uint64(n))
	if len(hashes) != want {
		return Frontier{}, fmt.Errorf("frontier of size %d: got %d hashes, want %d", n, len(hashes), want)
	}
	f := Frontier{size: n}
	i := 0
	for level := 0; level < 64; level++ {
		if n&(1<<level) == 0 {
			continue
		}
		f.nodes[level] = hashes[i]
		i++
	}
	return f, nil
}
