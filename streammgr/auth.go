package streammgr

import (
	"context"
	"sync"
	"time"

	runtimev1 "github.com/evergreen-edge/evergreen/proto/evergreen/runtime/v1"
	"github.com/evergreen-edge/evergreen/streammgr/protocol"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

const (
	// tokenTTL is how long an accepted token is trusted without asking the
	// runtime again; only new connections are checked.
	tokenTTL = 10 * time.Second
	// maxCachedTokens bounds the cache (there is one token per worker).
	maxCachedTokens = 256
	checkTimeout    = 3 * time.Second
)

// tokenChecker asks the runtime (CheckToken on DIR/run/runtime.sock)
// whether a Connect's authToken belongs to a running function: v1's
// STREAM_MANAGER_AUTHENTICATE_CLIENT=true.
type tokenChecker struct {
	sock string

	mu    sync.Mutex
	cc    *grpc.ClientConn
	cache map[string]cachedToken
}

type cachedToken struct {
	fn      string
	expires time.Time
}

func newTokenChecker(sock string) *tokenChecker {
	return &tokenChecker{sock: sock, cache: map[string]cachedToken{}}
}

func (t *tokenChecker) client() (runtimev1.RuntimeClient, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cc == nil {
		cc, err := grpc.NewClient("unix://"+t.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		t.cc = cc
	}
	return runtimev1.NewRuntimeClient(t.cc), nil
}

// check returns the function holding token, or an Unauthorized error.
func (t *tokenChecker) check(ctx context.Context, token string) (string, error) {
	if token == "" {
		return "", protocol.Errorf(protocol.Unauthorized, "authToken is required: this server authenticates its clients (evergreen.streams.authenticateClient)")
	}
	now := time.Now()
	t.mu.Lock()
	if c, ok := t.cache[token]; ok && now.Before(c.expires) {
		t.mu.Unlock()
		return c.fn, nil
	}
	t.mu.Unlock()
	rc, err := t.client()
	if err != nil {
		return "", protocol.Errorf(protocol.Unauthorized, "cannot verify the authToken: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	r, err := rc.CheckToken(ctx, &runtimev1.CheckTokenRequest{Token: token})
	switch status.Code(err) {
	case codes.OK:
	case codes.NotFound, codes.InvalidArgument:
		return "", protocol.Errorf(protocol.Unauthorized, "the authToken was not issued to a running function")
	default:
		return "", protocol.Errorf(protocol.Unauthorized, "cannot verify the authToken: the runtime did not answer (%v)", status.Convert(err).Message())
	}
	t.mu.Lock()
	if len(t.cache) >= maxCachedTokens {
		clear(t.cache)
	}
	t.cache[token] = cachedToken{fn: r.GetFunctionArn(), expires: now.Add(tokenTTL)}
	t.mu.Unlock()
	return r.GetFunctionArn(), nil
}

func (t *tokenChecker) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cc != nil {
		t.cc.Close()
		t.cc = nil
	}
}
