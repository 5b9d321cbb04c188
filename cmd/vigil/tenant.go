package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/vigilhq/vigil/domain/service"
)

func runTenant(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		fmt.Fprintln(stderr, "usage: vigil tenant create --name NAME [--region eu|us] [--json]")
		return errUsage
	}
	fs := flag.NewFlagSet("tenant create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := bindConfig(fs, env, "region")
	name := fs.String("name", "", "the tenant's name (required)")
	region := fs.String("region", "", "the tenant's region (default: the deployment's, VIGIL_REGION)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	if *name == "" {
		fmt.Fprintln(stderr, "vigil tenant create: --name is required")
		return errUsage
	}
	if *region == "" {
		*region = cfg.Region
	}
	sys, err := openService(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer sys.Close()
	t, key, err := sys.service.CreateTenant(ctx, *name, *region)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(map[string]string{"tenant": t.ID, "name": t.Name, "region": t.Region, "admin_key": key})
	}
	fmt.Fprintf(stdout, "tenant    %s (%s, region %s)\nadmin key %s\n\nThe key is shown once; store it now.\n", t.ID, t.Name, t.Region, key)
	return nil
}

func runAPIKey(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "create" && args[0] != "revoke") {
		fmt.Fprintln(stderr, "usage: vigil apikey create --tenant ID --role admin|auditor|integration|ingest|relay|media [--description TEXT] [--json]\n       vigil apikey revoke --id KEY_ID")
		return errUsage
	}
	fs := flag.NewFlagSet("apikey "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := bindConfig(fs, env)
	tenant := fs.String("tenant", "", "tenant id (create)")
	role := fs.String("role", "", "admin, auditor, integration, ingest, relay or media (create)")
	desc := fs.String("description", "", "what the key is for (create)")
	id := fs.String("id", "", "the key's id, or the whole key (revoke)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	if args[0] == "create" && (*tenant == "" || *role == "") {
		fmt.Fprintln(stderr, "vigil apikey create: --tenant and --role are required")
		return errUsage
	}
	if args[0] == "revoke" && *id == "" {
		fmt.Fprintln(stderr, "vigil apikey revoke: --id is required")
		return errUsage
	}
	sys, err := openService(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer sys.Close()
	if args[0] == "revoke" {
		if err := sys.service.RevokeAPIKey(ctx, *id); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "revoked")
		return nil
	}
	k, full, err := sys.service.CreateAPIKey(ctx, *tenant, service.Role(*role), *desc)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(map[string]string{"id": k.ID, "tenant": k.Tenant, "role": string(k.Role), "key": full})
	}
	fmt.Fprintf(stdout, "key %s (id %s, role %s)\n\nThe key is shown once; store it now.\n", full, k.ID, k.Role)
	return nil
}
