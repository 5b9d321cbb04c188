package compliance_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func TestRetentionMovesThroughArchiveToShredded(t *testing.T) {
	w := newWorld(t)
	sc := w.scenario()
	ctx := context.Background()
	// A recording of the session: its object goes when the session is
	// shredded.
	var deleted []string
	if _, err := w.db.Pool.Exec(ctx, `INSERT INTO recording_objects (tenant, recording_id, guid, object_key) VALUES ($1, 'rec-1', $2, 'recordings/rec-1')`, w.tenant, sc.session); err != nil {
		t.Fatal(err)
	}
	job := compliance.NewRetentionJob(compliance.RetentionConfig{Pool: w.db.Pool, Ledger: w.ledger, Blobs: w.blobs, Now: w.clock.Now,
		Recordings: func(_ context.Context, tenant, guid, id, key string) error {
			deleted = append(deleted, tenant+"/"+guid+"/"+id+"/"+key)
			return nil
		}})
	object := "archives/" + w.tenant + "/" + sc.session + ".vra"

	// Online: nothing happens within the 730 days.
	w.clock.Add(729 * 24 * time.Hour)
	if rep, err := job.RunOnce(ctx); err != nil || rep != (compliance.RetentionReport{}) {
		t.Fatalf("within the online period: %+v %v", rep, err)
	}

	// Archived: bundle stored, encrypted, with proofs; reporting rows gone.
	w.clock.Add(2 * 24 * time.Hour)
	rep, err := job.RunOnce(ctx)
	w.must(err)
	if rep.Archived != 2 || rep.Purged != 0 {
		t.Fatalf("archive run: %+v", rep)
	}
	if len(deleted) != 0 {
		t.Fatalf("recordings deleted at archiving: %v", deleted)
	}
	blob, err := w.blobs.Get(ctx, object)
	w.must(err)
	if strings.Contains(string(blob), sc.session) {
		t.Error("the archive is not encrypted")
	}
	b, err := compliance.OpenArchive(ctx, w.sealer, w.tenant, sc.session, blob)
	w.must(err)
	cp, err := ledger.OpenCheckpoint([]byte(b.Checkpoint), note.VerifierList(w.verifier))
	w.must(err)
	if len(b.Events) < 10 {
		t.Fatalf("archive holds %d events", len(b.Events))
	}
	for _, ae := range b.Events {
		leaf, _ := base64.StdEncoding.DecodeString(ae.Leaf)
		e, err := ledger.DecodeLeaf(leaf)
		w.must(err)
		h := ledger.LeafHash(&e)
		if hex.EncodeToString(h[:]) != ae.LeafHash {
			t.Fatalf("seq %d: leaf hash does not match the leaf", ae.Seq)
		}
		var proof tlog.RecordProof
		for _, p := range ae.Proof {
			raw, _ := hex.DecodeString(p)
			var x tlog.Hash
			copy(x[:], raw)
			proof = append(proof, x)
		}
		if err := tlog.CheckRecord(proof, cp.Size, cp.Root, ae.Seq, h); err != nil {
			t.Fatalf("seq %d: inclusion proof: %v", ae.Seq, err)
		}
	}
	var rows int
	w.must(w.db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM rpt_sessions) + (SELECT count(*) FROM rpt_chat) + (SELECT count(*) FROM rpt_notes)`).Scan(&rows))
	if rows != 0 {
		t.Errorf("%d reporting rows left after archiving", rows)
	}
	if rep, err := job.RunOnce(ctx); err != nil || rep != (compliance.RetentionReport{}) {
		t.Fatalf("second archive run: %+v %v", rep, err)
	}
	w.project()
	w.checkPresent(sc, customerName) // the log stays readable while archived

	// Shredded after the archive period: keys destroyed, archive deleted.
	w.clock.Add(730 * 24 * time.Hour)
	rep, err = job.RunOnce(ctx)
	w.must(err)
	if want := w.tenant + "/" + sc.session + "/rec-1/recordings/rec-1"; len(deleted) != 1 || deleted[0] != want {
		t.Errorf("recordings deleted at the shredding: %v, want [%s]", deleted, want)
	}
	if rep.Purged != 2 {
		t.Fatalf("purge run: %+v", rep)
	}
	if _, err := w.blobs.Stat(ctx, object); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("archive after purge: %v", err)
	}
	if rep, err := job.RunOnce(ctx); err != nil || rep != (compliance.RetentionReport{}) {
		t.Fatalf("second purge run: %+v %v", rep, err)
	}
	types := w.streamTypes(domain.SessionStream(sc.session))
	if strings.Count(types, "compliance.retention_archived") != 1 || strings.Count(types, "compliance.retention_purged") != 1 {
		t.Errorf("stream events: %s", types)
	}
	w.project()
	w.checkGone(sc, customerName, customerEmail, chatText, customerIP, "Other Person", "unrelated chat")
	w.verifyLog()
}

// TestRetentionFollowsChangedPeriods: periods changed by an admin
// (tenant.retention_changed) are those the job applies from its next round,
// and no archive period shreds right after archiving.
func TestRetentionFollowsChangedPeriods(t *testing.T) {
	w := newWorld(t)
	sc := w.scenario()
	ctx := context.Background()
	job := compliance.NewRetentionJob(compliance.RetentionConfig{Pool: w.db.Pool, Ledger: w.ledger, Blobs: w.blobs, Now: w.clock.Now})
	w.clock.Add(2 * 24 * time.Hour)
	if rep, err := job.RunOnce(ctx); err != nil || rep != (compliance.RetentionReport{}) {
		t.Fatalf("within the default 730 days: %+v %v", rep, err)
	}
	if _, err := w.svc.ChangeRetention(ctx, w.admin, domain.Retention{OnlineDays: 1, ArchiveDays: 0}, [16]byte{}); err != nil {
		t.Fatal(err)
	}
	// One day online and no archive: archived, then shredded in the same round.
	rep, err := job.RunOnce(ctx)
	w.must(err)
	if rep.Archived != 2 || rep.Purged != 2 {
		t.Fatalf("after the change to one day online and no archive: %+v, want both sessions archived and shredded (session %s)", rep, sc.session)
	}
}
