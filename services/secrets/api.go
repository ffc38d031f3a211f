package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	secretsv1 "github.com/evergreen-edge/evergreen/proto/evergreen/secrets/v1"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/secrets/envelope"
	"github.com/evergreen-edge/evergreen/services/secrets/store"
	"google.golang.org/grpc"
)

// PutSecret stores a new version of a secret.
func (s *Service) PutSecret(ctx context.Context, in *secretsv1.PutSecretRequest, _ ...grpc.CallOption) (*secretsv1.PutSecretResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p := store.Put{Binary: in.GetBinary(), VersionID: in.GetVersionId()}
	var err error
	if p.Name, p.ARN, err = secretName(in.GetName()); err != nil {
		return nil, err
	}
	for i, l := range in.GetLabels() {
		if err := checkName("staging label", l, maxLabelBytes); err != nil {
			return nil, errdefs.InvalidArgument(fmt.Sprintf("labels[%d]", i), "%v", err)
		}
	}
	p.Labels = in.GetLabels()
	if p.VersionID != "" {
		if err := checkVersionID(p.VersionID); err != nil {
			return nil, errdefs.InvalidArgument("version_id", "%v", err)
		}
	}
	switch src := in.GetSource().(type) {
	case *secretsv1.PutSecretRequest_Value:
		p.Value = src.Value
		if len(p.Value) == 0 {
			return nil, errdefs.InvalidArgument("value", "is empty")
		}
	case *secretsv1.PutSecretRequest_SealedValue:
		if len(src.SealedValue) == 0 {
			return nil, errdefs.InvalidArgument("sealed_value", "is empty")
		}
		key, err := s.keys.Key()
		if err != nil {
			return nil, err
		}
		if p.Value, err = envelope.Open(key, src.SealedValue); err != nil {
			if errors.Is(err, envelope.ErrMalformed) || errors.Is(err, envelope.ErrWrongKey) || errors.Is(err, envelope.ErrTampered) {
				return nil, errdefs.InvalidArgument("sealed_value", "%v", err)
			}
			return nil, fmt.Errorf("sealed_value: %v: %w", err, errdefs.ErrInternal)
		}
		defer clear(p.Value)
		if len(p.Value) == 0 {
			return nil, errdefs.InvalidArgument("sealed_value", "holds an empty value")
		}
	default:
		return nil, errdefs.InvalidArgument("value", "is required (or sealed_value)")
	}
	if !p.Binary && !utf8.Valid(p.Value) {
		return nil, errdefs.InvalidArgument("value", "is not UTF-8 text; store it as binary (SecretBinary; ggctl secret put --binary)")
	}
	sec, id, err := s.db.Put(p)
	if err != nil {
		return nil, err
	}
	s.log.Info("secret put", "name", sec.Name, "version", id, "bytes", len(p.Value), "labels", strings.Join(labelsOf(sec, id), ","))
	list := s.db.List()
	return &secretsv1.PutSecretResponse{Secret: s.info(sec, list, s.view.Load()), VersionId: id}, nil
}

func labelsOf(sec store.Secret, id string) []string {
	for _, v := range sec.Versions {
		if v.ID == id {
			return v.Stages
		}
	}
	return nil
}

// secretName takes PutSecret's or DeleteSecret's name: a name, or a secret
// ARN, whose name is its id without the random suffix.
func secretName(s string) (name, arn string, err error) {
	if strings.HasPrefix(s, "arn:") {
		a, err := parseSecretARN(s)
		if err != nil {
			return "", "", errdefs.InvalidArgument("name", "%v", err)
		}
		if err := checkName("secret name", a.name, maxNameBytes); err != nil {
			return "", "", errdefs.InvalidArgument("name", "%v", err)
		}
		return a.name, a.full, nil
	}
	if err := checkName("secret name", s, maxNameBytes); err != nil {
		return "", "", errdefs.InvalidArgument("name", "%v", err)
	}
	return s, "", nil
}

// ListSecrets lists the stored secrets and the ones the group names.
func (s *Service) ListSecrets(ctx context.Context, _ *secretsv1.ListSecretsRequest, _ ...grpc.CallOption) (*secretsv1.ListSecretsResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	list := s.db.List()
	v := s.view.Load()
	out := &secretsv1.ListSecretsResponse{MaxValueBytes: store.MaxValueBytes}
	_, used := s.db.Usage()
	maxN, maxBytes := s.db.Limits()
	out.StoredBytes, out.MaxStoredBytes, out.MaxSecrets = uint64(used), uint64(maxBytes), uint32(maxN)
	for _, sec := range list {
		out.Secrets = append(out.Secrets, s.info(sec, list, v))
	}
	for _, r := range v.resources {
		if r.stored(list) != nil {
			continue
		}
		out.Secrets = append(out.Secrets, &secretsv1.SecretInfo{
			Name: r.arn.name, Arn: r.arn.full, Deployed: true, ResourceIds: []string{r.id},
			MissingLabels: slices.Clone(r.labels), Readers: v.readers(r),
		})
	}
	slices.SortStableFunc(out.Secrets, func(a, b *secretsv1.SecretInfo) int { return strings.Compare(a.Name, b.Name) })
	ki := s.keys.describe()
	out.SealingKeyId, out.SealingKeyAlgorithm, out.SealingPublicKeyPem, out.SealingKeySource, out.SealingKeyError = ki.id, ki.algorithm, ki.pemPublic, ki.source, ki.err
	return out, nil
}

func (s *Service) info(sec store.Secret, list []store.Secret, v *groupView) *secretsv1.SecretInfo {
	si := &secretsv1.SecretInfo{Name: sec.Name, Arn: sec.ARN, Stored: true}
	for _, ver := range sec.Versions {
		si.Versions = append(si.Versions, &secretsv1.VersionInfo{
			VersionId: ver.ID, Stages: ver.Stages, Size: uint32(ver.Size), Binary: ver.Binary, CreatedMs: ver.Created.UnixMilli(),
		})
	}
	readers := map[string]bool{}
	for _, r := range v.usedBy(sec, list) {
		si.Deployed = true
		si.ResourceIds = append(si.ResourceIds, r.id)
		if si.Arn == "" {
			si.Arn = r.arn.full
		}
		for _, l := range missingLabels(r, sec) {
			if !slices.Contains(si.MissingLabels, l) {
				si.MissingLabels = append(si.MissingLabels, l)
			}
		}
		for _, c := range v.readers(r) {
			readers[c] = true
		}
	}
	for c := range readers {
		si.Readers = append(si.Readers, c)
	}
	slices.Sort(si.Readers)
	return si
}

// DeleteSecret deletes a secret and its versions.
func (s *Service) DeleteSecret(ctx context.Context, in *secretsv1.DeleteSecretRequest, _ ...grpc.CallOption) (*secretsv1.DeleteSecretResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sec, err := s.lookup(in.GetName())
	if err != nil {
		return nil, err
	}
	if used := s.view.Load().usedBy(sec, s.db.List()); len(used) > 0 && !in.GetForce() {
		var ids []string
		for _, r := range used {
			ids = append(ids, fmt.Sprintf("%q", r.id))
		}
		return nil, fmt.Errorf("name: secret %q is used by the deployed group (resource %s); deploy a group without it first, or delete it with force (ggctl secret rm --force): %w",
			sec.Name, strings.Join(ids, ", "), errdefs.ErrFailedPrecondition)
	}
	n, err := s.db.Delete(sec.Name)
	if err != nil {
		return nil, err
	}
	s.log.Info("secret deleted", "name", sec.Name, "versions", n, "force", in.GetForce())
	return &secretsv1.DeleteSecretResponse{Versions: uint32(n)}, nil
}

// lookup finds a stored secret by name or ARN.
func (s *Service) lookup(nameOrARN string) (store.Secret, error) {
	name, a, err := secretName(nameOrARN)
	if err != nil {
		return store.Secret{}, err
	}
	list := s.db.List()
	if a != "" {
		for _, sec := range list {
			if sec.ARN == a {
				return sec, nil
			}
		}
	}
	if sec, ok := s.db.Get(name); ok && (a == "" || sec.ARN == "" || sec.ARN == a) {
		return sec, nil
	}
	return store.Secret{}, errdefs.NotFound("secret", nameOrARN)
}

// getRequest is the body of a function's get_secret_value call.
type getRequest struct {
	SecretId     string `json:"SecretId"`
	VersionId    string `json:"VersionId,omitempty"`
	VersionStage string `json:"VersionStage,omitempty"`
}

// getAnswer is the success body (v1's shape, ARN first).
type getAnswer struct {
	ARN           string   `json:"ARN"`
	Name          string   `json:"Name"`
	VersionId     string   `json:"VersionId"`
	SecretString  *string  `json:"SecretString,omitempty"`
	SecretBinary  []byte   `json:"SecretBinary,omitempty"`
	VersionStages []string `json:"VersionStages"`
	CreatedDate   int64    `json:"CreatedDate"`
}

// getError is the refusal body the v1 SDKs look for.
type getError struct {
	Status  int    `json:"Status"`
	Message string `json:"Message"`
}

// Messages of the refusals. Secrets Manager's own texts where it has one.
const (
	msgVersionID = "Query by VersionId is not yet supported"
	msgNotFound  = "Secrets Manager can't find the specified secret."
	msgStage     = "Secrets Manager can't find the specified secret value for staging label: "
)

// GetSecretValue answers a function's get_secret_value call.
func (s *Service) GetSecretValue(ctx context.Context, in *secretsv1.GetSecretValueRequest, _ ...grpc.CallOption) (*secretsv1.GetSecretValueResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	caller := in.GetFunctionArn()
	if caller == "" {
		return nil, errdefs.InvalidArgument("function_arn", "is required (the ARN of the calling function or connector)")
	}
	req := getRequest{SecretId: in.GetSecretId(), VersionId: in.GetVersionId(), VersionStage: in.GetVersionStage()}
	if len(in.GetRequest()) > 0 {
		if req != (getRequest{}) {
			return nil, errdefs.InvalidArgument("request", "give either request or secret_id, version_id and version_stage, not both")
		}
		if err := json.Unmarshal(in.GetRequest(), &req); err != nil {
			return s.refuse(caller, "", 400, "Invalid request: the body is not a JSON object with a string SecretId"), nil
		}
	}
	return s.answer(caller, req), nil
}

func (s *Service) refuse(caller, secretID string, status int, msg string) *secretsv1.GetSecretValueResponse {
	s.log.Info("secret read refused", "function", caller, "secret_id", secretID, "status", status, "message", msg)
	b, _ := json.Marshal(getError{Status: status, Message: msg})
	return &secretsv1.GetSecretValueResponse{Payload: b, Status: int32(status)}
}

func (s *Service) answer(caller string, req getRequest) *secretsv1.GetSecretValueResponse {
	id := req.SecretId
	switch {
	case id == "":
		return s.refuse(caller, id, 400, "Invalid request: SecretId is required")
	case req.VersionId != "":
		return s.refuse(caller, id, 400, msgVersionID)
	}
	stage := req.VersionStage
	if stage == "" {
		stage = store.Current
	}
	v := s.view.Load()
	r := v.find(id)
	if r == nil {
		return s.refuse(caller, id, 404, msgNotFound)
	}
	grants, inGroup := v.callers[caller]
	switch {
	case !inGroup:
		return s.refuse(caller, id, 403, fmt.Sprintf("Access denied: %s is not a function or connector of the deployed group", caller))
	case !grants[r.id]:
		return s.refuse(caller, id, 403, fmt.Sprintf("Access denied: %s has no resource access policy for the secret resource %q", caller, r.id))
	case !slices.Contains(r.labels, stage):
		// Only AWSCURRENT and the group's additional labels are deployed.
		return s.refuse(caller, id, 404, msgStage+stage)
	}
	sec := r.stored(s.db.List())
	if sec == nil {
		return s.refuse(caller, id, 404, msgNotFound)
	}
	ver, plain, err := s.db.Value(sec.Name, stage)
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		return s.refuse(caller, id, 404, msgStage+stage)
	case err != nil:
		s.log.Error("secret read failed", "function", caller, "secret", sec.Name, "err", err)
		return s.refuse(caller, id, 500, "Internal error: the secret store cannot decrypt the secret (see the secrets daemon's log)")
	}
	defer clear(plain)
	a := getAnswer{ARN: r.arn.full, Name: r.arn.name, VersionId: ver.ID, CreatedDate: ver.Created.UnixMilli()}
	for _, l := range ver.Stages {
		if slices.Contains(r.labels, l) {
			a.VersionStages = append(a.VersionStages, l)
		}
	}
	if ver.Binary {
		a.SecretBinary = plain
	} else {
		str := string(plain)
		a.SecretString = &str
	}
	b, err := json.Marshal(a)
	if err != nil {
		return s.refuse(caller, id, 500, "Internal error: "+err.Error())
	}
	s.log.Debug("secret read", "function", caller, "secret", sec.Name, "version", ver.ID, "stage", stage)
	return &secretsv1.GetSecretValueResponse{Payload: b, Status: 200}
}

// grpcServer adapts Service to the generated server interface.
type grpcServer struct {
	secretsv1.UnimplementedSecretsServer
	local *Service
}

func (g *grpcServer) PutSecret(ctx context.Context, in *secretsv1.PutSecretRequest) (*secretsv1.PutSecretResponse, error) {
	r, err := g.local.PutSecret(ctx, in)
	return r, errdefs.ToGRPC(err)
}

func (g *grpcServer) ListSecrets(ctx context.Context, in *secretsv1.ListSecretsRequest) (*secretsv1.ListSecretsResponse, error) {
	r, err := g.local.ListSecrets(ctx, in)
	return r, errdefs.ToGRPC(err)
}

func (g *grpcServer) DeleteSecret(ctx context.Context, in *secretsv1.DeleteSecretRequest) (*secretsv1.DeleteSecretResponse, error) {
	r, err := g.local.DeleteSecret(ctx, in)
	return r, errdefs.ToGRPC(err)
}

func (g *grpcServer) GetSecretValue(ctx context.Context, in *secretsv1.GetSecretValueRequest) (*secretsv1.GetSecretValueResponse, error) {
	r, err := g.local.GetSecretValue(ctx, in)
	return r, errdefs.ToGRPC(err)
}
