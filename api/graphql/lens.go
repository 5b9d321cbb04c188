package gql

import (
	"context"
	"strconv"
	"time"

	"github.com/graphql-go/graphql"
)

// LensUsage is one technician's Rescue Lens use over a range of days.
type LensUsage struct {
	TechnicianID string
	Sessions     int
	Conferences  int
	StreamMS     int64
}

// LensReports is the Lens part of the read port: the reports store
// implements it beside Reports.
type LensReports interface {
	// LensUsage returns, per technician, the sessions and conferences
	// created from day from to day to (dates, UTC) and the milliseconds
	// the customer's camera streamed in them; only technicianID's when it
	// is set. By technician id.
	LensUsage(ctx context.Context, tenant string, from, to time.Time, technicianID string) ([]LensUsage, error)
}

// lensUsageField is Query.lensUsage: Lens minutes per technician.
func (s *Server) lensUsageField() *graphql.Field {
	t := graphql.NewObject(graphql.ObjectConfig{Name: "LensUsage", Fields: graphql.Fields{
		"technicianId": plain(nonNull(graphql.String), func(u LensUsage) any { return u.TechnicianID }),
		"sessions":     plain(nonNull(graphql.Int), func(u LensUsage) any { return u.Sessions }),
		"conferences":  plain(nonNull(graphql.Int), func(u LensUsage) any { return u.Conferences }),
		"lensMinutes":  plain(nonNull(graphql.Float), func(u LensUsage) any { return float64(u.StreamMS) / 60000 }),
	}})
	return &graphql.Field{Type: nonNull(graphql.NewList(nonNull(t))),
		Args: graphql.FieldConfigArgument{
			"from": {Type: nonNull(graphql.String), Description: "First day, YYYY-MM-DD (UTC)."},
			"to":   {Type: nonNull(graphql.String), Description: "Last day, YYYY-MM-DD (UTC), at most 366 days after from."},
		},
		Description: "Per technician: Rescue Lens conferences created in the range, in how many sessions, and the minutes the customer's camera streamed. A technician sees his own.",
		Resolve: func(p graphql.ResolveParams) (any, error) {
			req := requestOf(p.Context)
			from, to, err := dayRange(p.Args)
			if err != nil {
				return nil, err
			}
			lr, ok := s.reports.(LensReports)
			if !ok {
				return []LensUsage{}, nil
			}
			rows, err := lr.LensUsage(p.Context, req.p.Tenant, from, to, visibleTo(req.p))
			if err != nil {
				return nil, err
			}
			if rows == nil {
				rows = []LensUsage{}
			}
			return rows, nil
		}}
}

// p2pMS is a CSV cell of the time to P2P: empty when none was made.
func p2pMS(ms *int64) string {
	if ms == nil {
		return ""
	}
	return strconv.FormatInt(*ms, 10)
}

// dayRange reads the from and to days (YYYY-MM-DD, UTC) of a report's
// arguments: to not before from, at most 366 days after it.
func dayRange(args map[string]any) (from, to time.Time, err error) {
	if from, err = parseDay("from", argString(args, "from")); err != nil {
		return
	}
	if to, err = parseDay("to", argString(args, "to")); err != nil {
		return
	}
	switch {
	case to.Before(from):
		err = errInvalid("to is before from")
	case to.Sub(from) > 366*24*time.Hour:
		err = errInvalid("the range may span at most 366 days")
	}
	return
}
