package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// NewGRPCServer returns a server with the interceptors every daemon uses
// (panic recovery, domain error mapping, request logging), server reflection
// and grpc.health.v1 registered. The health server starts NOT_SERVING.
func NewGRPCServer(log *slog.Logger, extra ...grpc.ServerOption) (*grpc.Server, *health.Server) {
	opts := append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unaryInterceptor(log)),
		grpc.ChainStreamInterceptor(streamInterceptor(log)),
	}, extra...)
	s := grpc.NewServer(opts...)
	h := health.NewServer()
	h.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(s, h)
	reflection.Register(s)
	return s, h
}

func unaryInterceptor(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		start := time.Now()
		defer func() {
			if r := recover(); r != nil {
				log.Error("panic in handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				err = status.Errorf(codes.Internal, "internal error in %s", info.FullMethod)
			}
			logRequest(log, info.FullMethod, start, err)
		}()
		resp, err = handler(ctx, req)
		return resp, errdefs.ToGRPC(err)
	}
}

func streamInterceptor(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		start := time.Now()
		defer func() {
			if r := recover(); r != nil {
				log.Error("panic in stream handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				err = status.Errorf(codes.Internal, "internal error in %s", info.FullMethod)
			}
			logRequest(log, info.FullMethod, start, err)
		}()
		return errdefs.ToGRPC(handler(srv, ss))
	}
}

func logRequest(log *slog.Logger, method string, start time.Time, err error) {
	if method == "/grpc.health.v1.Health/Check" || method == "/grpc.health.v1.Health/Watch" {
		return
	}
	code := errdefs.Code(err)
	lvl := slog.LevelDebug
	if code != codes.OK && code != codes.NotFound && code != codes.Canceled {
		lvl = slog.LevelInfo
	}
	log.Log(context.Background(), lvl, "request", "method", method, "code", code.String(), "took", time.Since(start).Round(time.Microsecond), "err", err)
}

// ListenUnix listens on a unix socket with mode 0660, removing a stale
// socket left by a killed process first.
func ListenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	if len(path) > 107 {
		return nil, fmt.Errorf("socket path %s is %d bytes; unix sockets allow 107 (use a shorter --root)", path, len(path))
	}
	if st, err := os.Lstat(path); err == nil && st.Mode()&os.ModeSocket != 0 {
		if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
			c.Close()
			return nil, fmt.Errorf("socket %s is in use by a running process", path)
		}
		os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// MutualTLSListener listens on TCP addr with TLS 1.2+ that requires a client
// certificate signed by caPEM.
func MutualTLSListener(addr string, cert tls.Certificate, caPEM []byte) (net.Listener, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("mutual TLS: no CA certificate in PEM")
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		// gRPC clients insist on ALPN h2.
		NextProtos: []string{"h2"},
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return tls.NewListener(l, cfg), nil
}

// TLSCredentials is the client side of MutualTLSListener.
func TLSCredentials(cert tls.Certificate, caPEM []byte, serverName string) (credentials.TransportCredentials, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("mutual TLS: no CA certificate in PEM")
	}
	return credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: serverName}), nil
}
