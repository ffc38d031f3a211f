package certmgr

import (
	"context"

	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
)

// grpcServer is the thin adapter from the gRPC server interface to the
// local service; the daemon's interceptor turns domain errors into status
// codes.
type grpcServer struct {
	certmgrv1.UnimplementedCertManagerServer
	local certmgrv1.CertManagerClient
}

func (g *grpcServer) GetAuthorities(ctx context.Context, in *certmgrv1.GetAuthoritiesRequest) (*certmgrv1.GetAuthoritiesResponse, error) {
	return g.local.GetAuthorities(ctx, in)
}

func (g *grpcServer) GetServerCertificate(ctx context.Context, in *certmgrv1.GetServerCertificateRequest) (*certmgrv1.ServerCertificate, error) {
	return g.local.GetServerCertificate(ctx, in)
}

func (g *grpcServer) RotateServerCertificate(ctx context.Context, in *certmgrv1.RotateServerCertificateRequest) (*certmgrv1.ServerCertificate, error) {
	return g.local.RotateServerCertificate(ctx, in)
}

func (g *grpcServer) CreateDevice(ctx context.Context, in *certmgrv1.CreateDeviceRequest) (*certmgrv1.CreateDeviceResponse, error) {
	return g.local.CreateDevice(ctx, in)
}

func (g *grpcServer) RegisterDevice(ctx context.Context, in *certmgrv1.RegisterDeviceRequest) (*certmgrv1.Device, error) {
	return g.local.RegisterDevice(ctx, in)
}

func (g *grpcServer) GetDevice(ctx context.Context, in *certmgrv1.GetDeviceRequest) (*certmgrv1.Device, error) {
	return g.local.GetDevice(ctx, in)
}

func (g *grpcServer) ListDevices(ctx context.Context, in *certmgrv1.ListDevicesRequest) (*certmgrv1.ListDevicesResponse, error) {
	return g.local.ListDevices(ctx, in)
}

func (g *grpcServer) RemoveDevice(ctx context.Context, in *certmgrv1.RemoveDeviceRequest) (*certmgrv1.RemoveDeviceResponse, error) {
	return g.local.RemoveDevice(ctx, in)
}

func (g *grpcServer) VerifyDevice(ctx context.Context, in *certmgrv1.VerifyDeviceRequest) (*certmgrv1.VerifyDeviceResponse, error) {
	return g.local.VerifyDevice(ctx, in)
}
