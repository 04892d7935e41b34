//! Connections to an endpoint: plain TCP, or TLS through rustls (the system's roots, plus an
//! optional CA file, or no verification at all when asked explicitly). One HTTP/1.1 handshake
//! for both, shared by the load generator's keep-alive connections, the smoke test and the
//! `/metrics` scrapes; the choice is made once per connection, never per request.

use std::{
    net::SocketAddr,
    path::Path,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};
use serde_json::Value;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

use crate::spec::workload::TlsSettings;

/// An `http://` or `https://` address taken apart once, for every client and check in benchflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url {
    pub https: bool,
    /// The host alone (brackets of an IPv6 address kept off): the name a certificate is checked
    /// against.
    pub host: String,
    /// `host:port`, the port defaulted (80, 443).
    pub hostport: String,
    /// What follows the authority: empty or `/…`.
    pub path: String,
}

impl Url {
    pub(crate) fn parse(url: &str) -> Result<Url, String> {
        let (https, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(r), _) => (false, r),
            (None, Some(r)) => (true, r),
            _ => return Err("it must start with http:// or https://".into()),
        };
        let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (h, after) = v6.split_once(']').ok_or("an IPv6 address lacks its `]`")?;
                (h, after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        if host.is_empty() {
            return Err("no host".into());
        }
        let port = match port {
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("`{p}` is not a port (1-65535)")),
            },
            None if https => 443,
            None => 80,
        };
        let hostport =
            if authority.starts_with('[') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        Ok(Url { https, host: host.to_string(), hostport, path: path.to_string() })
    }

    pub(crate) fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }
}

/// A TLS client for one server name.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tls({:?})", self.name)
    }
}

impl Tls {
    /// A client for `host` with these settings.
    pub fn new(host: &str, settings: &TlsSettings) -> Result<Tls, String> {
        let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_string())
            .map_err(|e| format!("`{host}` is not a name a certificate can be checked against: {e}"))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let config = if settings.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth()
        } else {
            let mut roots = RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            if let Some(file) = &settings.ca_file {
                let path = Path::new(file);
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("CA file {}: {e}", path.display()))?;
                if certs.is_empty() {
                    return Err(format!("CA file {}: no certificate in it", path.display()));
                }
                for cert in certs {
                    roots.add(cert).map_err(|e| format!("CA file {}: {e}", path.display()))?;
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        Ok(Tls { connector: TlsConnector::from(Arc::new(config)), name })
    }
}

/// A connected byte stream: plain TCP, or TLS over it.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Connects to `addr` (no Nagle delay), through TLS when `tls` is given.
pub(crate) async fn connect(addr: SocketAddr, tls: Option<&Tls>) -> std::io::Result<Stream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    match tls {
        None => Ok(Stream::Plain(stream)),
        Some(tls) => Ok(Stream::Tls(Box::new(tls.connector.connect(tls.name.clone(), stream).await?))),
    }
}

/// Opens an HTTP/1.1 connection (hyper's) to `addr`, through TLS when `tls` is given.
pub(crate) async fn open(addr: SocketAddr, tls: Option<&Tls>) -> std::io::Result<SendRequest<Full<Bytes>>> {
    let stream = connect(addr, tls).await?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Raises this process's limit on open files to the most it may have (as Go's runtime does):
/// every stream in flight holds a connection at each end, and a soft limit of 1,024 would otherwise fail
/// the streams beyond it. Best effort: a limit that cannot be raised stays. Returns the limit
/// now in force (none when it cannot be read).
pub(crate) fn raise_open_files_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}

/// `insecure_skip_verify`: accepts any certificate, still checks the handshake's signatures.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One plain-HTTP request with `headers`; returns the status and the body.
pub(crate) async fn fetch(
    method: &str,
    url: &str,
    body: Option<&Value>,
    headers: &hyper::HeaderMap,
    tls: &TlsSettings,
    timeout: Duration,
) -> Result<(u16, Bytes), String> {
    let url = Url::parse(url).map_err(|why| format!("`{url}`: {why}"))?;
    let (hostport, path) = (url.hostport.as_str(), if url.path.is_empty() { "/" } else { url.path.as_str() });
    let tls = if url.https { Some(Tls::new(&url.host, tls)?) } else { None };
    let work = async {
        let addr = tokio::net::lookup_host(hostport)
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| format!("cannot resolve {hostport}"))?;
        let mut sender =
            open(addr, tls.as_ref()).await.map_err(|e| format!("cannot reach {hostport}: {e}"))?;
        let payload = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let mut req =
            hyper::Request::builder().method(method).uri(path).header(hyper::header::HOST, hostport);
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req.body(Full::new(payload)).map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((status, bytes))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("no answer within {} s", timeout.as_secs_f64()))?
}

#[cfg(test)]
mod tests {
    use super::Url;

    #[test]
    fn urls_are_taken_apart_with_default_ports() {
        let u = Url::parse("https://api.example.com/v1").unwrap();
        assert_eq!(
            (u.https, u.host.as_str(), u.hostport.as_str(), u.path.as_str()),
            (true, "api.example.com", "api.example.com:443", "/v1")
        );
        let u = Url::parse("http://127.0.0.1:8000").unwrap();
        assert_eq!((u.hostport.as_str(), u.path.as_str()), ("127.0.0.1:8000", ""));
        let u = Url::parse("http://[::1]:9000/x").unwrap();
        assert_eq!((u.host.as_str(), u.hostport.as_str()), ("::1", "[::1]:9000"));
        assert!(Url::parse("ftp://x").unwrap_err().contains("http://"));
        assert!(Url::parse("http://host:99999").unwrap_err().contains("`99999` is not a port"));
        assert_eq!(Url::parse("http://:80").unwrap_err(), "no host");
    }
}
