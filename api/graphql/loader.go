package gql

import (
	"sync"
)

// loader batches the reads of one request: resolvers of a session's
// timeline (and of session(id)) enqueue the session id and return a thunk;
// graphql-go completes every sibling before it calls any thunk (breadth
// first), so the first thunk called reads the rows of every enqueued
// session in one query per table and argument set.
type loader struct {
	mu      sync.Mutex
	batches map[batchKey]*batch
}

type batchKey struct {
	part  string
	after int64
	limit int
}

type batch struct {
	ids    []string
	seen   map[string]bool
	loaded bool
	rows   map[string]any // id -> []T
	err    error
}

func newLoader() *loader { return &loader{batches: map[batchKey]*batch{}} }

// enqueue adds id to the open batch of key and returns a thunk giving id's
// rows ([]T, never nil). fetch reads the rows of many ids; idOf tells which
// id a row belongs to.
func enqueue[T any](l *loader, key batchKey, id string, fetch func(ids []string) ([]T, error), idOf func(T) string) func() (any, error) {
	l.mu.Lock()
	b := l.batches[key]
	if b == nil || b.loaded {
		b = &batch{seen: map[string]bool{}}
		l.batches[key] = b
	}
	if !b.seen[id] {
		b.seen[id] = true
		b.ids = append(b.ids, id)
	}
	l.mu.Unlock()
	return func() (any, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if !b.loaded {
			b.loaded = true
			rows, err := fetch(b.ids)
			b.err = err
			grouped := map[string][]T{}
			for _, r := range rows {
				grouped[idOf(r)] = append(grouped[idOf(r)], r)
			}
			b.rows = make(map[string]any, len(grouped))
			for k, v := range grouped {
				b.rows[k] = v
			}
		}
		if b.err != nil {
			return nil, b.err
		}
		v, _ := b.rows[id].([]T)
		if v == nil {
			v = []T{}
		}
		return v, nil
	}
}
