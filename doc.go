// Package vigil is the root of the Vigil module: the event-sourced audit and
// compliance backend of a remote-support service. The program is
// cmd/vigil; the layout and its import rules are in docs/architecture.md and
// are kept true by layout_test.go.
package vigil
