//! What both upstreams' HTTPS clients share: the ureq agent (timeouts,
//! proxy, extra CA, small buffers) and reading a response body into a
//! reused page buffer.

use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;

/// ureq's buffer for response bytes (headers must fit).
pub const HTTP_INPUT_BUFFER: usize = 32 * 1024;
/// How much a page buffer grows when a body outgrows it.
pub const BODY_GROWTH_BYTES: usize = 64 * 1024;
/// ureq's buffer for request bytes (headers and the small JSON body).
pub const HTTP_OUTPUT_BUFFER: usize = 16 * 1024;

/// The error text for a redirect from `url` to `location`.
pub fn redirect_message(location: Option<&str>) -> String {
    format!(
        "the server answered with a redirect to {}; the API never redirects: check the \
         configured URL, and that no proxy or gateway rewrites requests",
        location.unwrap_or("(no location)")
    )
}

/// How to reach an upstream, validated with the configuration.
#[derive(Clone, Copy, Debug)]
pub struct HttpSettings<'a> {
    /// HTTP proxy `host:port`.
    pub proxy: Option<&'a str>,
    /// Extra CA certificates (PEM) to trust.
    pub ca_pem: Option<&'a str>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
}

/// The agent for one tenant's upstream; an error says which setting is
/// unusable.
pub fn agent(settings: &HttpSettings<'_>) -> Result<ureq::Agent, String> {
    let mut builder = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(settings.connect_timeout))
        .timeout_global(Some(settings.request_timeout))
        .user_agent(concat!("siem-agent/", env!("CARGO_PKG_VERSION")))
        // The APIs never redirect. Following one turned a POST into a GET
        // without its filters, whose answer looked like a valid page; the
        // clients refuse a redirect with a clear error instead.
        .max_redirects(0)
        // ureq's default 128 KiB each way, per tenant, is most of an idle
        // tenant's memory; requests are small and responses are read
        // through into the page buffer anyway.
        .input_buffer_size(HTTP_INPUT_BUFFER)
        .output_buffer_size(HTTP_OUTPUT_BUFFER);
    if let Some(proxy) = settings.proxy {
        let proxy = ureq::Proxy::new(&format!("http://{proxy}"))
            .map_err(|error| format!("proxy {proxy}: {error}"))?;
        builder = builder.proxy(Some(proxy));
    }
    if let Some(pem) = settings.ca_pem {
        let roots: Result<Vec<_>, _> = ureq::tls::parse_pem(pem.as_bytes())
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
                Ok(_) => None,
                Err(error) => Some(Err(error)),
            })
            .collect();
        let roots = roots.map_err(|error| format!("CA file: {error}"))?;
        builder = builder.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
                .build(),
        );
    }
    Ok(ureq::Agent::new_with_config(builder.build()))
}

/// Reads `reader` to its end into `page`; returns the body's length, which
/// `page` then has. The bytes `page` holds from the last page are read over
/// rather than cleared first: `read_to_end` zeroes a buffer's spare room
/// before reading into it, 6 MB a backfill page (1.5% of the agent's CPU),
/// while this zeroes only what a body adds beyond the last one's length.
pub fn read_body(reader: &mut impl Read, page: &mut Vec<u8>) -> io::Result<usize> {
    let mut filled = 0;
    let result = loop {
        if filled == page.len() {
            page.resize(filled + BODY_GROWTH_BYTES, 0);
        }
        match reader.read(&mut page[filled..]) {
            Ok(0) => break Ok(filled),
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => break Err(error),
        }
    };
    page.truncate(filled);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out `body` a few bytes a call, interrupted now and then, and
    /// fails at the end if `fail` is set.
    struct Trickle<'a> {
        body: &'a [u8],
        calls: usize,
        fail: bool,
    }

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            self.calls += 1;
            if self.calls.is_multiple_of(3) {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            if self.body.is_empty() && self.fail {
                return Err(std::io::ErrorKind::ConnectionReset.into());
            }
            let n = out.len().min(self.body.len()).min(7 + self.calls % 1000);
            out[..n].copy_from_slice(&self.body[..n]);
            self.body = &self.body[n..];
            Ok(n)
        }
    }

    #[test]
    fn bodies_are_read_whole_over_whatever_the_buffer_held() {
        let long: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let short = b"{\"data\":[],\"hasNext\":false}".to_vec();
        let mut page = Vec::new();
        // Empty, then a longer body than held, then a shorter one over it,
        // then an empty body, then longer again.
        for body in [&long[..], &short[..], &long[..1000], &[][..], &long[..]] {
            let mut reader = Trickle {
                body,
                calls: 0,
                fail: false,
            };
            let read = read_body(&mut reader, &mut page).expect("reads");
            assert_eq!(read, body.len());
            assert_eq!(page, body);
        }
    }

    #[test]
    fn a_failed_body_read_reports_the_error_and_keeps_only_what_arrived() {
        let mut page = vec![b'x'; 100_000];
        let mut reader = Trickle {
            body: b"{\"data\":[{\"_id\":\"a\"}",
            calls: 0,
            fail: true,
        };
        let error = read_body(&mut reader, &mut page).expect_err("the connection failed");
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);
        assert_eq!(page, b"{\"data\":[{\"_id\":\"a\"}");
    }
}
