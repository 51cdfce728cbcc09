//! `gantry serve`: configuration → store, blob store, registry → HTTP server, with
//! graceful shutdown on SIGTERM or Ctrl-C.

use std::time::Duration;

use anyhow::Context;
use auth::AccessPolicy;
use blobs::BlobStore;
use registry::{MutableTagRule, RegistryConfig};
use server::AppState;
use store::{NewToken, Store, StoreOptions};
use tokio::net::TcpListener;

use crate::ServeArgs;
use crate::config::{Config, LogFormat};

/// Applies the environment/flag layer over the file layer.
fn configure(args: ServeArgs) -> anyhow::Result<Config> {
    let mut config = Config::load(args.config.as_deref())?;
    macro_rules! set {
        ($($arg:ident => $($field:ident).+),* $(,)?) => {
            $(if let Some(value) = args.$arg { config.$($field).+ = value; })*
        };
    }
    set!(
        listen => listen,
        data_dir => data_dir,
        fsync => fsync,
        log_format => log_format,
        anonymous_pull => anonymous_pull,
        max_connections => max_connections,
        max_manifest_bytes => limits.max_manifest_bytes,
        max_blob_bytes => limits.max_blob_bytes,
        upload_ttl_seconds => limits.upload_ttl_seconds,
        maintenance_interval_seconds => limits.maintenance_interval_seconds,
        repository_creation => registry.repository_creation,
    );
    if args.external_url.is_some() {
        config.external_url = args.external_url;
    }
    if args.database_url.is_some() {
        config.database_url = args.database_url;
    }
    if args.blob_store.is_some() {
        config.blob_store = args.blob_store;
    }
    config.validate()?;
    Ok(config)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GANTRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    use std::io::IsTerminal;
    // Colours only for a person at a terminal, never into files or log collectors.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = configure(args)?;
    init_logging(config.log_format);
    raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let uses_data_dir = config.database_url.is_none() || config.blob_store.is_none();
    if uses_data_dir {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("cannot create data directory {}", config.data_dir.display())
        })?;
    }
    let store = Store::open(
        &config.database_url(),
        StoreOptions {
            max_connections: config.max_connections,
            fsync: config.fsync,
            ..StoreOptions::default()
        },
    )
    .await
    .context("opening the database")?;
    let blob_store = config.blob_store_config()?;
    let credentials = match &blob_store {
        blobs::BlobStoreConfig::S3(_) => crate::s3_keys::from_environment()?,
        _ => None,
    };
    let blobs = BlobStore::open_config(&blob_store, config.fsync, credentials.as_ref())
        .context("opening the blob store")?;
    bootstrap_admin(&store).await?;

    let registry_config = RegistryConfig {
        max_manifest_bytes: config.limits.max_manifest_bytes,
        max_blob_bytes: config.limits.max_blob_bytes,
        upload_ttl: Duration::from_secs(config.limits.upload_ttl_seconds),
        mutable_tags: config
            .registry
            .mutable_tags
            .iter()
            .map(|rule| MutableTagRule {
                repository: rule.repository.clone(),
                tags: rule.tags.clone(),
            })
            .collect(),
        repository_creation: creation(config.registry.repository_creation),
        namespace_creation: config
            .registry
            .namespace_creation
            .iter()
            .map(|rule| registry::NamespaceCreationRule {
                namespace: rule.namespace.clone(),
                policy: creation(rule.policy),
            })
            .collect(),
        access: AccessPolicy {
            anonymous_pull: config.anonymous_pull,
        },
        credential_failures: auth::FailureLimits {
            burst: config.access.failed_credentials_burst,
            per_minute: config.access.failed_credentials_per_minute,
        },
        realm: "gantry".to_owned(),
        external_url: config.external_url.clone(),
        service: None,
        // Pushed site archives are held to the limits deployments apply.
        site_archives: registry::SiteArchiveChecks {
            limits: config.deploy.static_site.limits,
            max_archive_bytes: config.deploy.static_site.max_archive_bytes,
            ..registry::SiteArchiveChecks::default()
        },
        quarantine_denies_pulls: config.registry.quarantine
            == crate::config::QuarantineMode::DenyPulls,
    };
    if config.external_url.is_none() && !config.listen.ip().is_loopback() {
        tracing::warn!(
            "external_url is not set: registry token challenges name http://HOST/token; \
             behind a TLS proxy set external_url = \"https://…\" so clients send credentials over TLS"
        );
    }
    let outbound = std::sync::Arc::new(config.outbound.policy()?);
    let deployers = deployers(&config, &store, &blobs, &outbound)?;
    let access = server::AccessConfig {
        federation: auth::oidc::Federation::new(
            config.access.issuers()?,
            auth::oidc::KeyCaching {
                max_age: Duration::from_secs(config.access.jwks_max_age_seconds),
                min_refetch: Duration::from_secs(config.access.jwks_min_refetch_seconds),
            },
            outbound.clone(),
        ),
        outbound,
    };
    let configured_host = registry_config.public_host();
    let state = AppState::new(store.clone(), blobs, registry_config)
        .with_access(access)
        .with_deploy(config.deploy.jobs()?, deployers);
    let web = server::WebSettings {
        sessions: config.web.sessions(),
        ..state.web
    };
    let state = state.with_web(web).with_gc(config.gc.settings());
    // The signing key: read from its file, or made there on first start; its public
    // half is recorded as the current key (a key file replaced by hand is a rotation).
    let key_file = config.signing_key_file();
    let key = attest::SigningKey::load_or_create(&key_file)
        .with_context(|| format!("the signing key {}", key_file.display()))?;
    tracing::info!(key_id = %key.key_id(), file = %key_file.display(), "signing key");
    let state = state.with_signing_key(key, config.signing.attest_deployments);
    let state = state.with_checkpoints(server::CheckpointSettings {
        entries: config.signing.checkpoint_entries,
        interval: (config.signing.checkpoint_minutes > 0)
            .then(|| Duration::from_secs(config.signing.checkpoint_minutes * 60)),
    });
    if let Some(ring) = &state.signing {
        ring.publish(&state.store, "gantry")
            .await
            .context("recording the signing key's public half")?;
    }
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener
        .local_addr()
        .context("reading the listening address")?;
    tracing::info!(%address, database = store.kind(), blob_store = state.blobs.description(), "gantry started");
    println!("gantry: listening on http://{address}");
    // Image references handed to deploy targets name the host clients pull from, and
    // webhook receivers call back where clients reach this server: the external URL's,
    // else one derived from the listening address.
    let public_host = match configured_host {
        Some(host) => host,
        None => {
            let derived = derived_host(address);
            tracing::warn!(
                registry_host = %derived,
                "external_url is not set: image references handed to deploy targets name {derived} and webhook receivers call back at http://{derived}; set external_url to the address clients and targets reach this server at"
            );
            derived
        }
    };
    let callback_base = config
        .external_url
        .clone()
        .unwrap_or_else(|| format!("http://{public_host}"));
    let state = state
        .with_registry_host(public_host)
        .with_webhooks(secrets(&config), &callback_base);

    // A garbage collection pass this replica was making when it last died is over.
    let replica = state
        .engine
        .job_owner()
        .rsplit_once('/')
        .map_or(state.engine.job_owner(), |(name, _)| name)
        .to_owned();
    match state.registry.forget_dead_pass(&replica).await {
        Ok(true) => tracing::info!(
            "a garbage collection pass this replica left unfinished will be finished by the next"
        ),
        Ok(false) => {}
        Err(error) => tracing::warn!(
            error = error.message(),
            "giving up an unfinished garbage collection pass failed"
        ),
    }
    let (stop_maintenance, maintenance_stopped) = tokio::sync::watch::channel(false);
    let maintenance_stopped_for_worker = maintenance_stopped.clone();
    let maintenance_stopped_for_reconcile = maintenance_stopped.clone();
    let maintenance = tokio::spawn(server::run_maintenance(
        state.clone(),
        Duration::from_secs(config.limits.maintenance_interval_seconds),
        maintenance_stopped,
    ));
    let worker = {
        let engine = state.engine.clone();
        let stopped = maintenance_stopped_for_worker;
        tokio::spawn(async move { engine.work(stopped).await })
    };
    let reconciler = (config.deploy.reconcile_interval_seconds > 0).then(|| {
        let engine = state.engine.clone();
        let stopped = maintenance_stopped_for_reconcile;
        let interval = Duration::from_secs(config.deploy.reconcile_interval_seconds);
        tokio::spawn(async move { engine.reconcile_loop(interval, stopped).await })
    });
    server::connections::serve(
        listener,
        server::router(state),
        config.http.limits(),
        shutdown_signal(terminate),
    )
    .await;
    let _ = stop_maintenance.send(true);
    let _ = maintenance.await;
    let _ = worker.await;
    if let Some(reconciler) = reconciler {
        let _ = reconciler.await;
    }
    store.close().await;
    tracing::info!("gantry stopped");
    Ok(())
}

/// The `HOST:PORT` clients reach this server at when no external URL says: the
/// listening address, or for a wildcard address (`0.0.0.0`, `::`) the machine's host
/// name with the port.
fn derived_host(address: std::net::SocketAddr) -> String {
    let port = address.port();
    match address.ip() {
        ip if ip.is_unspecified() => {
            let name = crate::config::host_name().unwrap_or_else(|| "localhost".to_owned());
            format!("{name}:{port}")
        }
        std::net::IpAddr::V6(ip) => format!("[{ip}]:{port}"),
        std::net::IpAddr::V4(ip) => format!("{ip}:{port}"),
    }
}

/// Raises the soft limit on open files to the hard limit: every connection, blob
/// being read and database file is one, and the usual soft limit (1,024) is what
/// half-open connections would exhaust first.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open file limit"),
    }
}

/// On the very first start, creates the `admin` user and prints its token once.
async fn bootstrap_admin(store: &Store) -> anyhow::Result<()> {
    let fresh = auth::FreshToken::generate().context("generating the admin token")?;
    let created = store
        .users()
        .bootstrap_admin(NewToken {
            id: &fresh.id,
            user_name: "admin",
            description: "bootstrap admin token",
            token_hash: &fresh.hash,
            expires_at: None,
            scope: None,
        })
        .await
        .context("creating the admin user")?;
    if created {
        println!("gantry: first start: created user `admin`; its token is shown only this once:");
        println!("gantry: admin token: {}", fresh.secret);
        println!(
            "gantry: use it as the password for user `admin` (docker/skopeo/oras login) or as `Authorization: Bearer`"
        );
    }
    Ok(())
}

/// Waits for SIGTERM or Ctrl-C. The handlers are installed by the caller before the
/// server announces itself, so a signal that arrives right after start is not lost
/// (the default action would kill the process instead of shutting it down).
async fn shutdown_signal(mut terminate: tokio::signal::unix::Signal) {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

fn creation(policy: crate::config::RepositoryCreation) -> registry::RepositoryCreation {
    match policy {
        crate::config::RepositoryCreation::Admins => registry::RepositoryCreation::Admins,
        crate::config::RepositoryCreation::Never => registry::RepositoryCreation::Never,
    }
}

/// The secrets targets name: files under `[deploy] secrets_dir`, default
/// `data_dir/secrets`.
fn secrets(config: &Config) -> engine::Secrets {
    engine::Secrets::new(Some(config.secrets_dir()))
}

/// Every deploy target this server offers, with its settings from `[deploy]` (the
/// `webhook` target comes once the listening address is known).
fn deployers(
    config: &Config,
    store: &Store,
    blobs: &BlobStore,
    outbound: &std::sync::Arc<outbound::Policy>,
) -> anyhow::Result<engine::Deployers> {
    let secrets = secrets(config);
    let work_dir = config
        .deploy
        .work_dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("deploy"));
    let registry_copy = regcopy::RegistryCopyDeployer::new(
        config.deploy.registry_copy.clone(),
        store.clone(),
        blobs.clone(),
        secrets.clone(),
        outbound.clone(),
    )
    .map_err(|e| anyhow::anyhow!("deploy.registry_copy: {e}"))?;
    // What programs the server starts (command targets, invalidation hooks, git) may
    // see of its environment: read here, once, and handed down.
    let programs = engine::ChildEnvironment::inherited(|name| std::env::var_os(name));
    let mut static_site = config.deploy.static_site.clone();
    static_site.programs = programs.clone();
    if static_site.work_dir.is_none() {
        static_site.work_dir = Some(work_dir.join("sites"));
    }
    let secrets_for_gitops = secrets.clone();
    let static_site = site::StaticSiteDeployer::new(
        static_site,
        store.clone(),
        blobs.clone(),
        secrets,
        outbound.clone(),
    );
    let mut gitops = config.deploy.gitops.clone();
    gitops.programs = programs.clone();
    if gitops.work_dir.is_none() {
        gitops.work_dir = Some(work_dir.join("gitops"));
    }
    let gitops = gitops::GitopsDeployer::new(gitops, secrets_for_gitops, outbound.clone())
        .map_err(|e| anyhow::anyhow!("deploy.{e}"))?;
    Ok(engine::Deployers::new(programs)
        .with(std::sync::Arc::new(registry_copy))
        .with(std::sync::Arc::new(static_site))
        .with(std::sync::Arc::new(gitops)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_name_the_address_clients_reach_without_an_external_url() {
        let at = |text: &str| derived_host(text.parse().expect("an address"));
        assert_eq!(at("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(at("10.1.2.3:8080"), "10.1.2.3:8080");
        assert_eq!(at("[::1]:5000"), "[::1]:5000");
        // A wildcard address is nobody's to pull from: the machine's name is.
        let name = crate::config::host_name().unwrap_or_else(|| "localhost".to_owned());
        assert_eq!(at("0.0.0.0:5000"), format!("{name}:5000"));
        assert_eq!(at("[::]:443"), format!("{name}:443"));
    }
}
