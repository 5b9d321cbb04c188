package service

import (
	"slices"
	"testing"
)

// TestEveryCommandHasARule: commandRules is the one table of who may send
// what; a command type without a row would be refused as unknown, and a
// row without a command type is dead.
func TestEveryCommandHasARule(t *testing.T) {
	types := CommandTypes()
	for _, typ := range types {
		r, ok := commandRules[typ]
		if !ok {
			t.Errorf("command type %s has no rule", typ)
			continue
		}
		if r.technician == techNever && !r.ingest {
			t.Errorf("command type %s: nobody may send it", typ)
		}
		if r.audited && r.technician != techHolder {
			t.Errorf("command type %s: audited refusals are for holder commands", typ)
		}
	}
	for typ := range commandRules {
		if !slices.Contains(types, typ) {
			t.Errorf("rule for %s, which is no command type", typ)
		}
	}
}
