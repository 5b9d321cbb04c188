package clients_test

import (
	"os/exec"
	"testing"
)

// TestGraphQLJS has graphql-js load the schema as GraphiQL, Apollo and
// codegen do (standard introspection, buildClientSchema, validateSchema,
// the SDL at /graphql/schema.graphql) and validate and run every GraphQL
// example of docs/ against a server holding a simulated run
// (testdata/clients/graphql/check.mjs).
func TestGraphQLJS(t *testing.T) {
	dir := needNodeModules(t, "testdata/clients/graphql")
	s := startServe(t, nil)
	tenant, admin := s.tenant(t)
	s.simulate(t, admin, s.apiKey(t, tenant, "ingest"), 3)
	cmd := exec.Command("node", "check.mjs")
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), "VIGIL_URL="+s.URL, "VIGIL_KEY="+admin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("graphql-js check: %v\n%s", err, out)
	}
	t.Logf("graphql-js:\n%s", out)
}
