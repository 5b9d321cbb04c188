package eventstoredb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FakeServer is an in-process stand-in for a KurrentDB node that speaks the
// part of the gRPC protocol the store uses (Streams.Append and Streams.Read of
// one stream or of $all), with the semantics KurrentDB documents: expected
// revision checks, idempotent repeats of event ids, $all in append order,
// reads from a position inclusive, a 1 MiB append limit.
//
// It exists because no KurrentDB server can run where this adapter was
// written: it lets the store's own logic (ordering, joins, retries,
// reconnection, several processes on one namespace) run under the race
// detector. It is not evidence that the store works against KurrentDB; the
// contract suite against a real server (VIGIL_TEST_KURRENTDB_URL) is.
type FakeServer struct {
	api.UnimplementedStreamsServer

	mu      sync.Mutex
	log     []*fakeEvent
	streams map[string][]*fakeEvent
	next    uint64
	// failAppend, when set, is asked before each append whether it fails
	// with a gRPC status.
	failAppend func(stream string) error
	// appends counts the appends per stream.
	appends map[string]int

	addr string
	srv  *grpc.Server
}

type fakeEvent struct {
	id          uuid.UUID
	stream      string
	rev         uint64
	pos         uint64
	typ, ctype  string
	data, meta  []byte
	createdTick int64
}

// NewFakeServer starts a fake on a free local port; it stops when tb ends.
func NewFakeServer(tb testing.TB) *FakeServer {
	tb.Helper()
	f := &FakeServer{streams: map[string][]*fakeEvent{}, appends: map[string]int{}, next: 1000}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	f.addr = lis.Addr().String()
	f.serve(lis)
	tb.Cleanup(f.Stop)
	return f
}

func (f *FakeServer) serve(lis net.Listener) {
	srv := grpc.NewServer()
	api.RegisterStreamsServer(srv, f)
	f.mu.Lock()
	f.srv = srv
	f.mu.Unlock()
	go func() { _ = srv.Serve(lis) }()
}

// URL returns the connection string of the fake.
func (f *FakeServer) URL() string {
	return "esdb://" + f.addr + "?tls=false&maxDiscoverAttempts=3&discoveryInterval=50"
}

// Stop stops the server; its data stays for Restart.
func (f *FakeServer) Stop() {
	f.mu.Lock()
	srv := f.srv
	f.mu.Unlock()
	srv.Stop()
}

// Restart serves the same data again on the same address.
func (f *FakeServer) Restart(tb testing.TB) {
	tb.Helper()
	var lis net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if lis, err = net.Listen("tcp", f.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		tb.Fatal(err)
	}
	f.serve(lis)
}

// SetFailAppend installs fn (nil removes it).
func (f *FakeServer) SetFailAppend(fn func(stream string) error) {
	f.mu.Lock()
	f.failAppend = fn
	f.mu.Unlock()
}

// Appends returns how many appends stream received.
func (f *FakeServer) Appends(stream string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.appends[stream]
}

// Write appends raw events to stream as another program would, without any
// check.
func (f *FakeServer) Write(stream, typ string, data, meta []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.appendLocked(stream, []*api.AppendReq_ProposedMessage{{
		Id:       uuidProto(uuid.New()),
		Metadata: map[string]string{"type": typ, "content-type": "application/octet-stream"},
		Data:     data, CustomMetadata: meta,
	}})
}

// Events returns a copy of the events of stream.
func (f *FakeServer) Events(stream string) []fakeEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeEvent
	for _, e := range f.streams[stream] {
		out = append(out, *e)
	}
	return out
}

func uuidFromProto(u *shared.UUID) (uuid.UUID, error) {
	s := u.GetStructured()
	if s == nil {
		return uuid.Parse(u.GetString_())
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(s.MostSignificantBits))
	binary.BigEndian.PutUint64(b[8:], uint64(s.LeastSignificantBits))
	return uuid.UUID(b), nil
}

func uuidProto(id uuid.UUID) *shared.UUID {
	return &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{
		MostSignificantBits:  int64(binary.BigEndian.Uint64(id[:8])),
		LeastSignificantBits: int64(binary.BigEndian.Uint64(id[8:])),
	}}}
}

const fakeMaxAppendSize = 1 << 20

// Append implements the append RPC: options first, then the events.
func (f *FakeServer) Append(srv api.Streams_AppendServer) error {
	first, err := srv.Recv()
	if err != nil {
		return err
	}
	opts := first.GetOptions()
	if opts == nil {
		return status.Error(codes.InvalidArgument, "options first")
	}
	stream := string(opts.GetStreamIdentifier().GetStreamName())
	var msgs []*api.AppendReq_ProposedMessage
	size := 0
	for {
		req, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		m := req.GetProposedMessage()
		if m == nil {
			return status.Error(codes.InvalidArgument, "proposed message expected")
		}
		size += len(m.Data) + len(m.CustomMetadata)
		msgs = append(msgs, m)
	}
	if size > fakeMaxAppendSize {
		return status.Error(codes.InvalidArgument, "maximum append size exceeded")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.appends[stream]++
	if f.failAppend != nil {
		if err := f.failAppend(stream); err != nil {
			return err
		}
	}
	evs := f.streams[stream]
	exists := len(evs) > 0
	last := int64(len(evs)) - 1 // -1: no stream
	expected := int64(-2)       // any
	switch e := opts.ExpectedStreamRevision.(type) {
	case *api.AppendReq_Options_NoStream:
		expected = -1
	case *api.AppendReq_Options_Revision:
		expected = int64(e.Revision)
	case *api.AppendReq_Options_StreamExists:
		if !exists {
			return srv.SendAndClose(wrongVersion(last))
		}
		expected = last
	}
	// Idempotency: the ids of the request at the place they would have
	// gone (KurrentDB checks from the expected revision on; with Any it
	// looks for the first id and checks from there).
	from := expected + 1
	if expected == -2 {
		from = -1
		for _, e := range evs {
			if id, _ := uuidFromProto(msgs[0].Id); e.id == id {
				from = int64(e.rev)
				break
			}
		}
	}
	if from >= 0 && from <= last {
		matched := 0
		for i, m := range msgs {
			id, _ := uuidFromProto(m.Id)
			if int(from)+i < len(evs) && evs[int(from)+i].id == id {
				matched++
			}
		}
		if matched == len(msgs) {
			lastEv := evs[int(from)+len(msgs)-1]
			return srv.SendAndClose(success(lastEv.rev, lastEv.pos))
		}
		if expected != -2 {
			return srv.SendAndClose(wrongVersion(last))
		}
	} else if expected != -2 && expected != last {
		return srv.SendAndClose(wrongVersion(last))
	}
	lastEv := f.appendLocked(stream, msgs)
	return srv.SendAndClose(success(lastEv.rev, lastEv.pos))
}

func (f *FakeServer) appendLocked(stream string, msgs []*api.AppendReq_ProposedMessage) *fakeEvent {
	var e *fakeEvent
	for _, m := range msgs {
		id, _ := uuidFromProto(m.Id)
		// Positions grow by the record's size, as in KurrentDB's log.
		f.next += uint64(100 + len(m.Data) + len(m.CustomMetadata))
		e = &fakeEvent{
			id: id, stream: stream, rev: uint64(len(f.streams[stream])), pos: f.next,
			typ: m.Metadata["type"], ctype: m.Metadata["content-type"],
			data: m.Data, meta: m.CustomMetadata, createdTick: time.Now().UnixNano() / 100,
		}
		f.streams[stream] = append(f.streams[stream], e)
		f.log = append(f.log, e)
	}
	return e
}

func success(rev, pos uint64) *api.AppendResp {
	return &api.AppendResp{Result: &api.AppendResp_Success_{Success: &api.AppendResp_Success{
		CurrentRevisionOption: &api.AppendResp_Success_CurrentRevision{CurrentRevision: rev},
		PositionOption:        &api.AppendResp_Success_Position{Position: &api.AppendResp_Position{CommitPosition: pos, PreparePosition: pos}},
	}}}
}

func wrongVersion(last int64) *api.AppendResp {
	w := &api.AppendResp_WrongExpectedVersion{ExpectedRevisionOption: &api.AppendResp_WrongExpectedVersion_ExpectedAny{ExpectedAny: &shared.Empty{}}}
	if last < 0 {
		w.CurrentRevisionOption = &api.AppendResp_WrongExpectedVersion_CurrentNoStream{CurrentNoStream: &shared.Empty{}}
	} else {
		w.CurrentRevisionOption = &api.AppendResp_WrongExpectedVersion_CurrentRevision{CurrentRevision: uint64(last)}
	}
	return &api.AppendResp{Result: &api.AppendResp_WrongExpectedVersion_{WrongExpectedVersion: w}}
}

// Read implements reads of one stream (either direction) and of $all
// (forwards), with a count; subscriptions are not implemented.
func (f *FakeServer) Read(req *api.ReadReq, srv api.Streams_ReadServer) error {
	o := req.GetOptions()
	count := o.GetCount()
	if o.GetSubscription() != nil {
		return status.Error(codes.Unimplemented, "subscriptions are not faked")
	}
	back := o.GetReadDirection() == api.ReadReq_Options_Backwards
	var out []*fakeEvent
	f.mu.Lock()
	switch so := o.StreamOption.(type) {
	case *api.ReadReq_Options_Stream:
		name := string(so.Stream.GetStreamIdentifier().GetStreamName())
		evs := f.streams[name]
		if len(evs) == 0 {
			f.mu.Unlock()
			return srv.Send(&api.ReadResp{Content: &api.ReadResp_StreamNotFound_{StreamNotFound: &api.ReadResp_StreamNotFound{StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(name)}}}})
		}
		start := int64(0)
		switch r := so.Stream.RevisionOption.(type) {
		case *api.ReadReq_Options_StreamOptions_Revision:
			start = int64(r.Revision)
		case *api.ReadReq_Options_StreamOptions_End:
			start = int64(len(evs)) - 1
			if !back {
				start = int64(len(evs))
			}
		}
		for i := start; i >= 0 && i < int64(len(evs)) && uint64(len(out)) < count; {
			out = append(out, evs[i])
			if back {
				i--
			} else {
				i++
			}
		}
	case *api.ReadReq_Options_All:
		if back {
			f.mu.Unlock()
			return status.Error(codes.Unimplemented, "backwards $all is not faked")
		}
		from := uint64(0)
		switch p := so.All.AllOption.(type) {
		case *api.ReadReq_Options_AllOptions_Position:
			from = p.Position.CommitPosition
		case *api.ReadReq_Options_AllOptions_End:
			from = f.next + 1
		}
		for _, e := range f.log {
			if uint64(len(out)) >= count {
				break
			}
			if e.pos >= from {
				out = append(out, e)
			}
		}
	}
	f.mu.Unlock()
	for _, e := range out {
		rec := &api.ReadResp_ReadEvent_RecordedEvent{
			Id:               uuidProto(e.id),
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(e.stream)},
			StreamRevision:   e.rev, PreparePosition: e.pos, CommitPosition: e.pos,
			Metadata:       map[string]string{"type": e.typ, "content-type": e.ctype, "created": strconv.FormatInt(e.createdTick, 10)},
			CustomMetadata: e.meta, Data: e.data,
		}
		err := srv.Send(&api.ReadResp{Content: &api.ReadResp_Event{Event: &api.ReadResp_ReadEvent{
			Event: rec, Position: &api.ReadResp_ReadEvent_CommitPosition{CommitPosition: e.pos},
		}}})
		if err != nil {
			return err
		}
	}
	return nil
}

// String names the fake in test output.
func (f *FakeServer) String() string { return fmt.Sprintf("fake KurrentDB at %s", f.addr) }
