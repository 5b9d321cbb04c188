package gql

import (
	"context"
	"errors"
	"fmt"

	"github.com/vigilhq/vigil/domain"
)

// Error codes of this API beyond the domain's.
const (
	CodeQueryTooDeep    = "query_too_deep"
	CodeQueryTooComplex = "query_too_complex"
	CodeTimeout         = "timeout"
)

// codedError is an error with the code that GraphQL answers carry in
// extensions.code; it implements gqlerrors.ExtendedError.
type codedError struct {
	code, msg string
}

func (e *codedError) Error() string { return e.msg }

func (e *codedError) Extensions() map[string]any { return map[string]any{"code": e.code} }

func coded(code, format string, args ...any) *codedError {
	return &codedError{code: code, msg: fmt.Sprintf(format, args...)}
}

func errInvalid(format string, args ...any) error { return coded(domain.CodeInvalid, format, args...) }

func errForbidden(format string, args ...any) error {
	return coded(domain.CodeForbidden, format, args...)
}

// toCoded turns err into the error a caller sees: its code and safe
// message, "timeout" when the query's deadline passed, and "internal error"
// (logged by the caller of toCoded) for anything unexpected. It reports
// whether err was internal.
func toCoded(ctx context.Context, err error) (*codedError, bool) {
	var c *codedError
	if errors.As(err, &c) {
		return c, false
	}
	if errors.Is(err, context.DeadlineExceeded) || (ctx != nil && errors.Is(ctx.Err(), context.DeadlineExceeded)) {
		return coded(CodeTimeout, "the query took longer than its time limit"), false
	}
	if errors.Is(err, context.Canceled) {
		return coded(CodeTimeout, "the request was cancelled"), false
	}
	code := domain.ErrorCode(err)
	if code == domain.CodeInternal {
		return coded(domain.CodeInternal, "internal error"), true
	}
	return coded(code, "%s", domain.ErrorMessage(err)), false
}
