package compliance

// SetFailAfter makes erasures of g stop with the error fn returns after a
// step ("plan", "shred", "purge", "hooks", "append"), as a crash would;
// nil clears it. For tests only.
func SetFailAfter(g *GDPR, fn func(step string) error) { g.failAfter = fn }
