package auth

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"fmt"
)

// TLSServerEndPoint returns the tls-server-end-point channel binding data of a connection whose
// server presented cert (RFC 5929 section 4.1): the hash of the certificate's DER bytes, with
// the hash function of its signature algorithm, except that MD5 and SHA-1 are replaced by
// SHA-256. A certificate signed without a separate hash (Ed25519) has no such data, as in
// Postgres: the caller then does not offer SCRAM-SHA-256-PLUS.
func TLSServerEndPoint(cert *x509.Certificate) ([]byte, error) {
	switch cert.SignatureAlgorithm {
	case x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1,
		x509.SHA256WithRSA, x509.SHA256WithRSAPSS, x509.DSAWithSHA256, x509.ECDSAWithSHA256:
		h := sha256.Sum256(cert.Raw)
		return h[:], nil
	case x509.SHA384WithRSA, x509.SHA384WithRSAPSS, x509.ECDSAWithSHA384:
		h := sha512.Sum384(cert.Raw)
		return h[:], nil
	case x509.SHA512WithRSA, x509.SHA512WithRSAPSS, x509.ECDSAWithSHA512:
		h := sha512.Sum512(cert.Raw)
		return h[:], nil
	}
	return nil, fmt.Errorf("tls-server-end-point: no hash for certificate signature algorithm %v", cert.SignatureAlgorithm)
}
