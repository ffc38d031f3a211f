package export

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// The S3 export's six S3 calls (PutObject and the multipart upload's
// Create, UploadPart, ListParts, Complete and Abort) as REST requests
// signed with SigV4, built from the S3 API reference. The SDK's S3
// module is not linked: its init alone cost every ggd process about 1 MB
// of heap.

const (
	// s3EmptySHA256 is the SHA-256 of no bytes, the payload hash of a
	// request without a body.
	s3EmptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	// s3UnsignedPayload leaves a file body out of the signature over
	// https, where TLS guards it on the wire and Content-MD5 and the
	// CRC32 checksum against a wrong file read; the file is then hashed
	// once less.
	s3UnsignedPayload = "UNSIGNED-PAYLOAD"
	// s3ExpectContinue: a body at least this large waits for S3's
	// "100 Continue", so that a request S3 refuses (no such bucket, bad
	// credentials) does not send, nor charge, the whole file first.
	s3ExpectContinue = 1 << 20
	// s3MaxAnswer bounds the XML answer read (ListParts: up to 1000
	// parts of a few hundred bytes).
	s3MaxAnswer = 4 << 20
)

// s3Client sends the S3 export's requests to one region or endpoint.
type s3Client struct {
	hc        *http.Client
	creds     aws.CredentialsProvider
	region    string
	endpoint  *url.URL // the configured override; nil for AWS's
	pathStyle bool
	signer    *v4.Signer
}

// newS3Client is a client for cfg's region and credentials, sending to
// endpoint when not empty (an S3-compatible store, a test server), else
// to AWS. hc sends the requests: the per-request deadline comes from the
// caller's context, scaled by the body's size.
func newS3Client(cfg aws.Config, endpoint string, pathStyle bool, hc *http.Client) (*s3Client, error) {
	if cfg.Credentials == nil {
		return nil, errors.New("no AWS credentials")
	}
	if cfg.Region == "" && endpoint == "" {
		return nil, errors.New("no AWS region")
	}
	c := &s3Client{hc: hc, creds: cfg.Credentials, region: cfg.Region, pathStyle: pathStyle,
		// S3 signs the path as sent, encoded once (other services
		// encode it a second time for the signature).
		signer: v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })}
	if !aws.IsCredentialsProvider(c.creds, (*aws.CredentialsCache)(nil)) {
		c.creds = aws.NewCredentialsCache(c.creds)
	}
	if endpoint != "" {
		u, err := url.Parse(endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("S3 endpoint %q is not an http or https URL", endpoint)
		}
		c.endpoint = u
	}
	return c, nil
}

// s3ObjectURL is the URL of key in bucket: on the endpoint override when
// given (scheme, host and any path prefix as configured), else on AWS's
// regional endpoint https://s3.<region>.amazonaws.com (.com.cn in the
// China regions; us-east-1 included). The bucket goes in the host
// (virtual-hosted style, bucket.s3.<region>.amazonaws.com) unless path
// style is forced, the endpoint is an IP address, or the bucket name
// cannot be a host label there: a name with dots over https, which the
// wildcard certificate *.s3.<region>.amazonaws.com does not match. The
// key is encoded as SigV4 encodes it for S3: every byte but A-Z a-z 0-9
// - _ . ~ and '/' as %XX.
func s3ObjectURL(endpoint *url.URL, region string, pathStyle bool, bucket, key string) *url.URL {
	u := &url.URL{Scheme: "https"}
	base := ""
	if endpoint != nil {
		u.Scheme, u.Host = endpoint.Scheme, endpoint.Host
		base = strings.TrimSuffix(endpoint.Path, "/")
	} else {
		u.Host = "s3." + region + ".amazonaws.com"
		if strings.HasPrefix(region, "cn-") {
			u.Host += ".cn"
		}
	}
	virtual := !pathStyle && s3HostableBucket(bucket, u.Scheme == "https")
	if endpoint != nil && net.ParseIP(endpoint.Hostname()) != nil {
		virtual = false // no DNS name to put the bucket in
	}
	path := base + "/" + key
	if virtual {
		u.Host = bucket + "." + u.Host
	} else {
		path = base + "/" + bucket + "/" + key
	}
	u.Path, u.RawPath = path, s3EscapePath(path)
	return u
}

// s3HostableBucket reports whether bucket can be the first labels of a
// host name: lower-case DNS labels, not an IP address, and no dots over
// https.
func s3HostableBucket(bucket string, https bool) bool {
	if len(bucket) < 3 || len(bucket) > 63 || net.ParseIP(bucket) != nil || (https && strings.Contains(bucket, ".")) {
		return false
	}
	for _, l := range strings.Split(bucket, ".") {
		if l == "" || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// s3EscapePath percent-encodes every byte of p but the unreserved
// characters and '/'.
func s3EscapePath(p string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("-_.~/", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// s3Error is S3's refusal: a status other than 2xx (or a 200 whose body
// is an <Error>, as CompleteMultipartUpload may answer), with the code
// and message of its XML body when it has one.
type s3Error struct {
	Status    int
	Code      string // NoSuchBucket; "" when the answer named none
	Message   string
	RequestID string
}

func (e *s3Error) Error() string {
	s := fmt.Sprintf("HTTP %d", e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.RequestID != "" {
		s += " (request ID " + e.RequestID + ")"
	}
	return s
}

// s3ErrorBody is S3's error document,
// <Error><Code/><Message/><RequestId/></Error>.
type s3ErrorBody struct {
	XMLName   xml.Name
	Code      string `xml:"Code"`
	Message   string `xml:"Message"`
	RequestID string `xml:"RequestId"`
}

// parseS3Error reads an error answer: the code and message of its XML
// body, or only the status when the body is not one (a proxy's page, a
// HEAD).
func parseS3Error(status int, header http.Header, body []byte) *s3Error {
	e := &s3Error{Status: status, RequestID: header.Get("X-Amz-Request-Id")}
	var b s3ErrorBody
	if xml.Unmarshal(body, &b) == nil && b.XMLName.Local == "Error" {
		e.Code, e.Message = b.Code, b.Message
		if b.RequestID != "" {
			e.RequestID = b.RequestID
		}
	}
	if e.Code == "" && e.Message == "" {
		e.Message = http.StatusText(status)
	}
	return e
}

// s3Code is the S3 error code of err, "" when S3 did not answer it.
func s3Code(err error) string {
	var e *s3Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// s3Sums are a body's digests, computed in one read of it before it is
// sent: SigV4's payload hash (hex; empty when not computed), Content-MD5
// and the CRC32 checksum (base64, big-endian for the CRC).
type s3Sums struct {
	sha256, md5, crc32 string
}

// sumSection reads n bytes of r from off once and returns their digests,
// the SHA-256 only when withSHA256. A file shorter than that is
// errShrunk.
func sumSection(r io.ReaderAt, off, n int64, withSHA256 bool) (s3Sums, error) {
	m, c := md5.New(), crc32.NewIEEE()
	hs := []io.Writer{m, c}
	var sh hash.Hash
	if withSHA256 {
		sh = sha256.New()
		hs = append(hs, sh)
	}
	got, err := io.CopyBuffer(io.MultiWriter(hs...), io.NewSectionReader(r, off, n), make([]byte, 64<<10))
	if err != nil {
		return s3Sums{}, err
	}
	if got < n {
		return s3Sums{}, errShrunk
	}
	s := s3Sums{md5: base64.StdEncoding.EncodeToString(m.Sum(nil)),
		crc32: base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, c.Sum32()))}
	if sh != nil {
		s.sha256 = hex.EncodeToString(sh.Sum(nil))
	}
	return s, nil
}

// signsFiles reports whether a file body's SHA-256 is part of the
// signature: over plain http only (see s3UnsignedPayload).
func (c *s3Client) signsFiles() bool {
	return c.endpoint != nil && c.endpoint.Scheme == "http"
}

// s3Call is one request.
type s3Call struct {
	method      string
	bucket, key string
	query       url.Values
	header      http.Header
	body        io.Reader // nil: none
	length      int64
	payloadHash string // hex SHA-256 of body or s3UnsignedPayload; "" for no body
}

// do signs and sends call and returns the answer when it is a 2xx; any
// other is read into an *s3Error.
func (c *s3Client) do(ctx context.Context, call s3Call) (*http.Response, error) {
	u := s3ObjectURL(c.endpoint, c.region, c.pathStyle, call.bucket, call.key)
	u.RawQuery = call.query.Encode()
	body := call.body
	if body == nil || call.length == 0 {
		body = http.NoBody
	}
	req, err := http.NewRequestWithContext(ctx, call.method, u.String(), body)
	if err != nil {
		return nil, err
	}
	req.ContentLength = call.length
	for k, v := range call.header {
		req.Header[k] = v
	}
	if call.length >= s3ExpectContinue {
		req.Header.Set("Expect", "100-continue")
	}
	hash := call.payloadHash
	if hash == "" {
		hash = s3EmptySHA256
	}
	req.Header.Set("X-Amz-Content-Sha256", hash)
	creds, err := c.creds.Retrieve(ctx)
	if err != nil {
		return nil, fmt.Errorf("AWS credentials: %w", err)
	}
	if err := c.signer.SignHTTP(ctx, creds, req, hash, "s3", c.region, time.Now()); err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return nil, parseS3Error(resp.StatusCode, resp.Header, b)
}

// doXML sends call and decodes its XML answer into out.
func (c *s3Client) doXML(ctx context.Context, call s3Call, out any) error {
	resp, err := c.do(ctx, call)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, s3MaxAnswer))
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	var root s3ErrorBody
	if xml.Unmarshal(b, &root) == nil && root.XMLName.Local == "Error" {
		// A 200 that is a failure: S3 answers a long
		// CompleteMultipartUpload before it knows the outcome.
		return parseS3Error(resp.StatusCode, resp.Header, b)
	}
	if out == nil {
		return nil
	}
	if err := xml.Unmarshal(b, out); err != nil {
		return fmt.Errorf("malformed answer: %w", err)
	}
	return nil
}

// discard drains and closes an answer whose body is not needed, so that
// its connection is reused.
func discard(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// metadataHeader sets the user metadata as x-amz-meta-* headers.
func metadataHeader(h http.Header, metadata map[string]string) {
	for k, v := range metadata {
		h.Set("X-Amz-Meta-"+k, v)
	}
}

// fileBody fills in call's body: n bytes of body, its digests sums
// as Content-MD5, the CRC32 checksum and (over http) the payload hash.
func (c *s3Client) fileBody(call *s3Call, body io.Reader, n int64, sums s3Sums) {
	call.body, call.length = body, n
	call.header.Set("Content-Md5", sums.md5)
	call.header.Set("X-Amz-Checksum-Crc32", sums.crc32)
	call.payloadHash = sums.sha256
	if !c.signsFiles() {
		call.payloadHash = s3UnsignedPayload
	}
}

// putObject uploads body (n bytes, digests sums) as key with metadata.
func (c *s3Client) putObject(ctx context.Context, bucket, key string, metadata map[string]string, body io.Reader, n int64, sums s3Sums) error {
	call := s3Call{method: http.MethodPut, bucket: bucket, key: key, header: http.Header{}}
	metadataHeader(call.header, metadata)
	c.fileBody(&call, body, n, sums)
	resp, err := c.do(ctx, call)
	if err != nil {
		return err
	}
	discard(resp)
	return nil
}

// createMultipartUpload starts a multipart upload of key whose parts
// carry CRC32 checksums, and returns its upload ID.
func (c *s3Client) createMultipartUpload(ctx context.Context, bucket, key string, metadata map[string]string) (string, error) {
	call := s3Call{method: http.MethodPost, bucket: bucket, key: key, query: url.Values{"uploads": {""}}, header: http.Header{}}
	metadataHeader(call.header, metadata)
	call.header.Set("X-Amz-Checksum-Algorithm", "CRC32")
	var out struct {
		UploadID string `xml:"UploadId"`
	}
	if err := c.doXML(ctx, call, &out); err != nil {
		return "", err
	}
	if out.UploadID == "" {
		return "", errors.New("malformed answer: no UploadId")
	}
	return out.UploadID, nil
}

// s3Part is a part uploaded: ListParts's Part, CompleteMultipartUpload's.
type s3Part struct {
	PartNumber    int32  `xml:"PartNumber"`
	Size          int64  `xml:"Size,omitempty"`
	ETag          string `xml:"ETag"`
	ChecksumCRC32 string `xml:"ChecksumCRC32,omitempty"`
}

// uploadPart uploads part number of an upload and returns its ETag.
func (c *s3Client) uploadPart(ctx context.Context, bucket, key, uploadID string, number int32, body io.Reader, n int64, sums s3Sums) (string, error) {
	call := s3Call{method: http.MethodPut, bucket: bucket, key: key, header: http.Header{},
		query: url.Values{"partNumber": {strconv.Itoa(int(number))}, "uploadId": {uploadID}}}
	c.fileBody(&call, body, n, sums)
	resp, err := c.do(ctx, call)
	if err != nil {
		return "", err
	}
	discard(resp)
	etag := resp.Header.Get("ETag")
	if etag == "" {
		return "", errors.New("malformed answer: no ETag")
	}
	return etag, nil
}

// s3PartsPage is a page of ListParts.
type s3PartsPage struct {
	Parts []s3Part `xml:"Part"`
	// IsTruncated and NextPartNumberMarker are read as text: a missing
	// or empty element is "not truncated", not a malformed answer.
	IsTruncated          string `xml:"IsTruncated"`
	NextPartNumberMarker string `xml:"NextPartNumberMarker"`
}

// listParts returns a page of the parts S3 holds of an upload, those
// numbered above marker, and the marker of the next page (0 for none).
func (c *s3Client) listParts(ctx context.Context, bucket, key, uploadID string, marker int32) ([]s3Part, int32, error) {
	q := url.Values{"uploadId": {uploadID}}
	if marker > 0 {
		q.Set("part-number-marker", strconv.Itoa(int(marker)))
	}
	var out s3PartsPage
	if err := c.doXML(ctx, s3Call{method: http.MethodGet, bucket: bucket, key: key, query: q}, &out); err != nil {
		return nil, 0, err
	}
	if truncated, _ := strconv.ParseBool(strings.TrimSpace(out.IsTruncated)); !truncated {
		return out.Parts, 0, nil
	}
	next, err := strconv.ParseInt(strings.TrimSpace(out.NextPartNumberMarker), 10, 32)
	if err != nil || int32(next) <= marker {
		// Asking again from the same place would loop.
		return nil, 0, fmt.Errorf("malformed answer: truncated, NextPartNumberMarker %q after %d", out.NextPartNumberMarker, marker)
	}
	return out.Parts, int32(next), nil
}

// completeMultipartUpload assembles the upload from parts (in order).
func (c *s3Client) completeMultipartUpload(ctx context.Context, bucket, key, uploadID string, parts []s3Part) error {
	type completed struct {
		XMLName xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ CompleteMultipartUpload"`
		Parts   []s3Part `xml:"Part"`
	}
	in := completed{Parts: make([]s3Part, len(parts))}
	for i, p := range parts {
		p.Size = 0 // not an element of CompletedPart
		in.Parts[i] = p
	}
	b, err := xml.Marshal(in)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	call := s3Call{method: http.MethodPost, bucket: bucket, key: key, query: url.Values{"uploadId": {uploadID}},
		header: http.Header{"Content-Type": {"application/xml"}}, body: bytes.NewReader(b), length: int64(len(b)),
		payloadHash: hex.EncodeToString(sum[:])}
	return c.doXML(ctx, call, nil)
}

// abortMultipartUpload drops an upload and the parts S3 holds of it.
func (c *s3Client) abortMultipartUpload(ctx context.Context, bucket, key, uploadID string) error {
	resp, err := c.do(ctx, s3Call{method: http.MethodDelete, bucket: bucket, key: key, query: url.Values{"uploadId": {uploadID}}})
	if err != nil {
		return err
	}
	discard(resp)
	return nil
}
