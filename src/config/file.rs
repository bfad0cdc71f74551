//! The config file and how it combines with flags.
//!
//! The file is TOML. Its top level holds the process's options
//! ([`ServiceOptions`]); `[defaults]` holds tenant options every tenant
//! inherits; each `[[tenant]]` table is one tenant ([`TenantOptions`]).
//! Flags are the strongest layer: a flag overrides the same option of every
//! tenant. Flags that identify a tenant (name, API URL, credentials) are
//! refused when the file lists more than one tenant, because they could
//! only mean one of them.
//!
//! Every error names the file, the line and the key, because the person
//! reading it is editing that file. Syntax and type errors come with
//! positions from the TOML parser; errors found when the values are built
//! into a plan (a port out of range, an unreadable CA file) are located by
//! looking their key up in the parsed document.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use simd_json::prelude::*;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::build::{bounded, build_tenant, RunPlan, ServicePlan};
use super::cli::{
    RunArgs, ServiceOptions, TenantOptions, DEFAULT_CONFIG_FILE, DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_STATE_DIR,
};
use super::ConfigError;
use crate::logging::LogPlan;
use crate::state::names;

/// Key of the table every tenant inherits from.
pub const DEFAULTS_KEY: &str = "defaults";
/// Key of the tenant tables.
pub const TENANT_KEY: &str = "tenant";
/// Tenant options that, with the credentials, identify one tenant: as
/// flags, they are refused when the file lists several tenants.
const IDENTITY_KEYS: [&str; 2] = ["name", "api_url"];
/// Credential keys: when flags give any, the file's are ignored, so a
/// `--token` replaces a `token_file` instead of conflicting with it.
const CREDENTIAL_KEYS: [&str; 6] = [
    "token",
    "token_file",
    "tenant_id",
    "client_id",
    "client_secret",
    "client_secret_file",
];

/// Default size at which a log file is rotated.
pub const DEFAULT_LOG_FILE_BYTES: u64 = 10 << 20;
/// Default number of rotated log files kept.
pub const DEFAULT_LOG_FILES: usize = 5;

/// A parsed config file, kept for locating errors.
struct Document {
    path: PathBuf,
    text: String,
}

impl Document {
    fn line_at(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1
    }

    fn at(&self, offset: Option<usize>, key: String, message: String) -> ConfigError {
        ConfigError::InFile {
            path: self.path.clone(),
            line: offset.map(|o| self.line_at(o)),
            key,
            message,
        }
    }

    /// Where the value at `path` starts, or its nearest ancestor that
    /// exists.
    fn locate(&self, root: &Spanned<DeTable<'_>>, path: &str) -> Option<usize> {
        Some(lookup(root, path).0)
    }
}

/// Walks `path` (dotted keys and `[index]`) into the parsed document: the
/// start of the deepest value found, and whether the whole path exists.
fn lookup(root: &Spanned<DeTable<'_>>, path: &str) -> (usize, bool) {
    let mut found = root.span().start;
    let mut value: Option<&Spanned<DeValue<'_>>> = None;
    for segment in path.split('.') {
        let (key, index) = match segment.split_once('[') {
            Some((key, rest)) => (key, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let next = match value {
            None => root.get_ref().get(key),
            Some(v) => v.get_ref().get(key),
        };
        let Some(mut next) = next else {
            return (found, false);
        };
        if let Some(index) = index {
            match next.get_ref().get(index) {
                Some(item) => next = item,
                None => return (found, false),
            }
        }
        found = next.span().start;
        value = Some(next);
    }
    (found, true)
}

/// The config file `args` read: `--config`, or the default file when it
/// exists.
pub fn config_path(args: &RunArgs) -> Option<PathBuf> {
    match &args.config {
        Some(path) => Some(path.clone()),
        None => {
            let default = PathBuf::from(DEFAULT_CONFIG_FILE);
            default.exists().then_some(default)
        }
    }
}

/// Reads the config file, if there is one.
fn read_file(path: Option<PathBuf>) -> Result<Option<Document>, ConfigError> {
    let Some(path) = path else { return Ok(None) };
    let text = std::fs::read_to_string(&path).map_err(|error| ConfigError::InFile {
        path: path.clone(),
        line: None,
        key: String::new(),
        message: format!("cannot read: {error}"),
    })?;
    Ok(Some(Document { path, text }))
}

/// Deserializes one part of the document, errors located.
fn part<T: DeserializeOwned>(
    doc: &Document,
    value: Spanned<DeValue<'_>>,
    prefix: &str,
) -> Result<T, ConfigError> {
    let deserializer = toml::de::ValueDeserializer::from(value);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let key = match (prefix, path.as_str()) {
            (p, ".") | (p, "") => p.to_owned(),
            ("", path) => path.to_owned(),
            (p, path) => format!("{p}.{path}"),
        };
        let inner = error.into_inner();
        doc.at(
            inner.span().map(|s| s.start),
            key,
            inner.message().to_owned(),
        )
    })
}

/// The file's layers: service options, `[defaults]`, and the tenants.
struct FileLayers {
    service: ServiceOptions,
    defaults: TenantOptions,
    tenants: Vec<TenantOptions>,
}

fn parse_layers(doc: &Document) -> Result<FileLayers, ConfigError> {
    let root = DeTable::parse(&doc.text).map_err(|error| {
        doc.at(
            error.span().map(|s| s.start),
            String::new(),
            error.message().to_owned(),
        )
    })?;
    let span = root.span();
    let mut service = DeTable::new();
    let mut defaults = None;
    let mut tenants = None;
    for (key, value) in root.get_ref().iter() {
        match key.get_ref().as_ref() {
            DEFAULTS_KEY => defaults = Some(value.clone()),
            TENANT_KEY => tenants = Some(value.clone()),
            _ => {
                service.insert(key.clone(), value.clone());
            }
        }
    }
    let service = part(doc, Spanned::new(span, DeValue::Table(service)), "")?;
    let defaults = match defaults {
        Some(value) => part(doc, value, DEFAULTS_KEY)?,
        None => TenantOptions::default(),
    };
    let tenants = match tenants {
        None => Vec::new(),
        Some(value) => {
            let Some(items) = value.get_ref().as_array() else {
                return Err(doc.at(
                    Some(value.span().start),
                    TENANT_KEY.into(),
                    "must be an array of tables: write each tenant as [[tenant]]".into(),
                ));
            };
            let mut tenants = Vec::new();
            for (index, item) in items.iter().enumerate() {
                tenants.push(part(doc, item.clone(), &format!("{TENANT_KEY}[{index}]"))?);
            }
            tenants
        }
    };
    Ok(FileLayers {
        service,
        defaults,
        tenants,
    })
}

fn to_table<T: serde::Serialize>(value: &T) -> Result<toml::Table, ConfigError> {
    // Our option structs serialize to a table unless a number is out of
    // TOML's range, which the flags' parsers refuse first; never drop the
    // options silently.
    toml::Table::try_from(value)
        .map_err(|error| ConfigError::Merge(format!("an option is out of range: {error}")))
}

/// Lays `over` onto `base`, recursing into tables.
fn overlay(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(below)), toml::Value::Table(above)) => overlay(below, above),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn from_table<T: DeserializeOwned>(table: toml::Table) -> Result<T, ConfigError> {
    toml::Value::Table(table)
        .try_into()
        .map_err(|error: toml::de::Error| ConfigError::Merge(error.message().to_owned()))
}

/// Reads the config file (if any) and combines it with the flags into a
/// validated plan, plus the log settings.
pub fn load(args: &RunArgs) -> Result<(ServicePlan, LogPlan), ConfigError> {
    let doc = read_file(config_path(args))?;
    let layers = match &doc {
        Some(doc) => parse_layers(doc)?,
        None => FileLayers {
            service: ServiceOptions::default(),
            defaults: TenantOptions::default(),
            tenants: Vec::new(),
        },
    };
    let mut service_table = to_table(&layers.service)?;
    overlay(&mut service_table, to_table(&args.service)?);
    let service: ServiceOptions = from_table(service_table)?;

    let flags = to_table(&args.tenant)?;
    let tenant_count = layers.tenants.len().max(1);
    if tenant_count > 1 {
        let mut identity = IDENTITY_KEYS.iter().chain(&CREDENTIAL_KEYS);
        if let Some(key) = identity.find(|k| flags.contains_key(**k)) {
            return Err(ConfigError::IdentityFlag {
                flag: format!("--{}", if *key == "name" { "tenant" } else { key })
                    .replace('_', "-"),
                tenants: tenant_count,
            });
        }
    }
    let flags_give_credentials = CREDENTIAL_KEYS.iter().any(|k| flags.contains_key(*k));
    let file_tenants = if layers.tenants.is_empty() {
        vec![TenantOptions::default()]
    } else {
        layers.tenants
    };
    let parsed_root = doc.as_ref().and_then(|d| DeTable::parse(&d.text).ok());
    let mut tenants: Vec<RunPlan> = Vec::new();
    for (index, tenant) in file_tenants.into_iter().enumerate() {
        let mut merged = to_table(&layers.defaults)?;
        overlay(&mut merged, to_table(&tenant)?);
        if flags_give_credentials {
            for key in CREDENTIAL_KEYS {
                merged.remove(key);
            }
        }
        overlay(&mut merged, flags.clone());
        let fingerprint = fingerprint(&merged);
        let options: TenantOptions = from_table(merged)?;
        let built = build_tenant(&options, fingerprint).and_then(|plan| {
            let stem = names::file_stem(&plan.tenant);
            match tenants.iter().find(|t| names::file_stem(&t.tenant) == stem) {
                Some(other) if other.tenant == plan.tenant => {
                    Err(ConfigError::DuplicateTenant(plan.tenant))
                }
                Some(other) => Err(ConfigError::TenantFilesCollide {
                    first: other.tenant.clone(),
                    second: plan.tenant,
                    stem,
                }),
                None => Ok(plan),
            }
        });
        match built {
            Ok(plan) => tenants.push(plan),
            Err(error) => {
                let key = error.key();
                let from_flag = key.is_some_and(|k| {
                    let top = k.split('.').next().unwrap_or(k);
                    flags.contains_key(top)
                        && (top == k
                            || flags
                                .get(top)
                                .and_then(|t| t.as_table())
                                .is_some_and(|t| t.contains_key(k.rsplit('.').next().unwrap_or(k))))
                });
                return Err(match (&doc, &parsed_root, key) {
                    (Some(doc), Some(root), Some(key)) if !from_flag => {
                        let in_tenant = format!("{TENANT_KEY}[{index}].{key}");
                        let in_defaults = format!("{DEFAULTS_KEY}.{key}");
                        let (path, offset) = if has_key(root, &in_tenant) {
                            (in_tenant.clone(), doc.locate(root, &in_tenant))
                        } else if has_key(root, &in_defaults) {
                            (in_defaults.clone(), doc.locate(root, &in_defaults))
                        } else {
                            (in_tenant.clone(), doc.locate(root, &in_tenant))
                        };
                        doc.at(offset, path, error.to_string())
                    }
                    (Some(doc), Some(root), None) if !layers_empty(root) => {
                        let path = format!("{TENANT_KEY}[{index}]");
                        doc.at(doc.locate(root, &path), path, error.to_string())
                    }
                    _ => error,
                });
            }
        }
    }
    let plan = ServicePlan {
        tenants,
        state_dir: service
            .state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
        once: service.once,
        shutdown_timeout: bounded(
            "--shutdown-timeout",
            service.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
        )?,
        metrics_listen: service.metrics_listen,
    };
    let level = service.log_level.clone().unwrap_or_else(|| "info".into());
    if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
        return Err(ConfigError::LogLevel(level));
    }
    let log = LogPlan {
        directory: service.logs_directory.clone(),
        file_bytes: service.log_file_bytes.unwrap_or(DEFAULT_LOG_FILE_BYTES),
        files: service.log_files.unwrap_or(DEFAULT_LOG_FILES),
        level,
    };
    Ok((plan, log))
}

fn has_key(root: &Spanned<DeTable<'_>>, path: &str) -> bool {
    lookup(root, path).1
}

fn layers_empty(root: &Spanned<DeTable<'_>>) -> bool {
    root.get_ref().get(TENANT_KEY).is_none()
}

/// A digest of a tenant's merged options, to tell whether a reload
/// changed it (the options themselves hold secrets).
fn fingerprint(table: &toml::Table) -> String {
    let mut hasher = DefaultHasher::new();
    table.to_string().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser as _;

    use super::*;
    use crate::config::Cli;
    use crate::data_type::DataType;
    use crate::sink::Destination;
    use crate::source::cas::client::{Credentials, Secret};

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("siem-agent-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join(name);
        std::fs::write(&path, text).expect("written");
        path
    }

    fn load_with(path: &std::path::Path, flags: &[&str]) -> Result<ServicePlan, ConfigError> {
        let mut argv = vec!["siem-agent", "--config", path.to_str().expect("utf-8")];
        argv.extend_from_slice(flags);
        let cli = Cli::try_parse_from(argv).expect("clap accepts the flags");
        load(&cli.run).map(|(plan, _)| plan)
    }

    const TWO_TENANTS: &str = r#"
state_dir = "/var/lib/x"
shutdown_timeout = "5s"

[defaults]
requests_per_minute = 20
data_types = ["alerts"]

[defaults.syslog]
host = "siem.example.com"
protocol = "tcp"

[[tenant]]
name = "contoso"
api_url = "https://contoso.portal.cloudappsecurity.com"
token_file = "/etc/x/contoso.token"

[tenant.filters.alerts]
severity = { gte = 1 }

[[tenant]]
name = "fabrikam"
api_url = "https://fabrikam.portal.cloudappsecurity.com/"
token = "abc"
data_types = ["activities", "alerts"]
syslog = { host = "other.example.com", port = 1514 }
"#;

    #[test]
    fn tenants_inherit_defaults_and_flags_override_every_tenant() {
        let path = write("two.toml", TWO_TENANTS);
        let plan =
            load_with(&path, &["--syslog-port", "2000", "--poll-interval", "7s"]).expect("valid");
        assert_eq!(plan.state_dir, PathBuf::from("/var/lib/x"));
        assert_eq!(plan.shutdown_timeout, Duration::from_secs(5));
        let [contoso, fabrikam] = &plan.tenants[..] else {
            panic!("two tenants")
        };
        assert_eq!(contoso.tenant, "contoso");
        assert_eq!(contoso.kinds, [DataType::Alerts]);
        assert_eq!(contoso.requests_per_minute, 20);
        assert!(contoso.filters.contains_key(&DataType::Alerts));
        assert_eq!(fabrikam.kinds, [DataType::Activities, DataType::Alerts]);
        for (tenant, host) in [
            (contoso, "siem.example.com"),
            (fabrikam, "other.example.com"),
        ] {
            assert_eq!(tenant.poll_interval, Duration::from_secs(7));
            let Destination::Syslog(sink) = &tenant.destination else {
                panic!("syslog")
            };
            assert_eq!((sink.host.as_str(), sink.port), (host, 2000), "flag wins");
        }
        assert_ne!(contoso.fingerprint, fabrikam.fingerprint);
    }

    #[test]
    fn a_changed_option_changes_only_that_tenants_fingerprint() {
        let before = load_with(&write("fp1.toml", TWO_TENANTS), &[]).expect("valid");
        let edited = TWO_TENANTS.replace("severity = { gte = 1 }", "severity = { gte = 2 }");
        let after = load_with(&write("fp2.toml", &edited), &[]).expect("valid");
        assert_ne!(before.tenants[0].fingerprint, after.tenants[0].fingerprint);
        assert_eq!(before.tenants[1].fingerprint, after.tenants[1].fingerprint);
    }

    fn error_text(name: &str, text: &str, flags: &[&str]) -> String {
        let path = write(name, text);
        let error = load_with(&path, flags).expect_err("invalid").to_string();
        let shown = path.display().to_string();
        error.replace(&shown, "FILE")
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let cases = [
            ("syntax", "[[tenant]]\nname = \n", "FILE:2: "),
            (
                "unknown",
                "[[tenant]]\nname = \"a\"\n\n[[tenant]]\nsylsog = 1\n",
                "FILE:5: tenant[1].sylsog: unknown field `sylsog`",
            ),
            (
                "type",
                "[[tenant]]\napi_url = \"https://a.b\"\ntoken = \"t\"\nsyslog.port = \"x\"\n",
                "FILE:4: tenant[0].syslog.port: invalid type",
            ),
            (
                "top",
                "metrics_listen = \"nowhere\"\n",
                "FILE:1: metrics_listen: ",
            ),
            (
                "semantic",
                "[[tenant]]\napi_url = \"https://a.b\"\ntoken = \"t\"\n[tenant.syslog]\nhost = \"h\"\nprotocol = \"udp\"\nmax_message = 10\n",
                "FILE:7: tenant[0].syslog.max_message: --syslog-max-message 10: for udp",
            ),
            (
                "resend",
                "[[tenant]]\napi_url = \"https://a.b\"\ntoken = \"t\"\n[tenant.syslog]\nhost = \"h\"\nprotocol = \"relp\"\nresend_bytes = 10\n",
                "FILE:7: tenant[0].syslog.resend_bytes: --syslog-resend-bytes applies to tcp and tls only",
            ),
            (
                "in_defaults",
                "[defaults]\nproxy = \"bad proxy:1\"\n[[tenant]]\napi_url = \"https://a.b\"\ntoken = \"t\"\n",
                "FILE:2: defaults.proxy: ",
            ),
            (
                "missing",
                "[[tenant]]\nname = \"a\"\ntoken = \"t\"\n",
                "FILE:1: tenant[0].api_url: no api_url",
            ),
            (
                "duplicate",
                "[[tenant]]\napi_url = \"https://a.b\"\ntoken = \"t\"\n[[tenant]]\napi_url = \"https://a.b/\"\ntoken = \"u\"\n",
                "FILE:4: tenant[1].name: two tenants are named \"a.b\"",
            ),
        ];
        for (name, text, expected) in cases {
            let error = error_text(&format!("{name}.toml"), text, &[]);
            assert!(error.starts_with(expected), "{name}: {error}");
        }
    }

    #[test]
    fn a_bad_flag_is_reported_as_the_flag() {
        let error = error_text("flag.toml", TWO_TENANTS, &["--syslog-port", "0"]);
        assert_eq!(error, "--syslog-port must be 1-65535");
        let error = error_text("identity.toml", TWO_TENANTS, &["--token", "x"]);
        assert!(error.starts_with("--token cannot be given"), "{error}");
    }

    #[test]
    fn the_vendor_start_up_line_supplies_the_credentials() {
        let path = write(
            "vendor.toml",
            "[[tenant]]\napi_url = \"https://a.b\"\ntoken_file = \"/nonexistent\"\n",
        );
        let plan = load_with(
            &path,
            &[
                "--logsDirectory",
                "/tmp/logs",
                "--proxy",
                "proxy.local",
                "--token",
                "T0K",
            ],
        )
        .expect("valid");
        let client = plan.tenants[0].client.as_ref().expect("a legacy data type");
        assert_eq!(client.proxy.as_deref(), Some("proxy.local:8080"));
        assert!(matches!(&client.credentials, Credentials::Token(Secret::Value(t)) if t == "T0K"));
    }

    #[test]
    fn the_example_config_is_valid() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/siem-agent.toml");
        let plan = load_with(std::path::Path::new(example), &[]).expect("the example loads");
        let graph_only: Vec<&RunPlan> =
            plan.tenants.iter().filter(|t| t.client.is_none()).collect();
        assert_eq!(
            graph_only.len(),
            2,
            "the provider's customers use Graph only"
        );
        for tenant in graph_only {
            let graph = tenant.graph.as_ref().expect("Graph settings");
            assert_eq!(graph.client.graph_url, "https://graph.microsoft.com");
            assert_eq!(graph.windows.settle_ms, 600_000);
            assert_eq!(graph.windows.late_ms, 3_600_000);
            assert_eq!(graph.hunting_rows, 10_000);
            assert_eq!(
                graph.alerts_filter,
                "serviceSource eq 'microsoftDefenderForCloudApps'"
            );
        }
        let legacy = plan.tenants.iter().filter(|t| t.graph.is_none()).count();
        assert_eq!(legacy, 2, "the legacy tenants need no Entra application");
    }
}
