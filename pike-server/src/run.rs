//! Starting the gateway from a [`Config`]: data dir, store, TLS identity,
//! apps, listeners, HTTP API, periodic expiry, graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use pike_api::server::{Gateway, GatewayConfig, ReconnectSpread};
use tntunnel::TunnelConfig;
use tntunnel::tls::{Fingerprint, TlsServerConfig};
use tokio_util::sync::CancellationToken;

use crate::apps::AppDirectory;
use crate::auth::TokenAuthenticator;
use crate::config::Config;
use crate::data_dir::{DataDir, DevApp};
use crate::store::{RedbStore, StoreConfig};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The data dir is unusable.
    #[error(transparent)]
    DataDir(#[from] crate::data_dir::DataDirError),
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The TLS identity could not be loaded or made.
    #[error("tls: {0}")]
    Tls(String),
    /// A setting is out of range.
    #[error("configuration: {0}")]
    Config(String),
    /// A listener could not bind.
    #[error(transparent)]
    Bind(#[from] pike_api::server::GatewayError),
    /// The NATS JetStream cluster (`[cluster]`) could not be joined.
    #[error("cluster: {0}")]
    Cluster(String),
    // --- MQTT access ---
    /// An MQTT listener could not bind.
    #[error("cannot listen on {addr} (mqtt): {source}")]
    MqttBind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    // --- end MQTT access ---
    /// The HTTP listener could not bind.
    #[error("cannot listen on {addr} (http): {source}")]
    HttpBind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// What a started gateway tells its operator.
#[derive(Clone, Debug)]
pub struct Started {
    /// Listener addresses: (`tcp` | `tls` | `quic` | `http` | `https`,
    /// address).
    pub listening: Vec<(&'static str, SocketAddr)>,
    /// The dev app's credentials, when it serves the dev app.
    pub dev_app: Option<DevApp>,
    /// SHA-256 fingerprint of the TLS certificate.
    pub fingerprint: Option<Fingerprint>,
    /// The data dir.
    pub data_dir: std::path::PathBuf,
}

/// Device WebSocket connections upgraded and not yet taken by the gateway's
/// acceptor; more are closed at once (the acceptor takes them as fast as
/// its handshake bound allows).
const WS_BACKLOG: usize = 1024;

/// Runs the gateway until `shutdown` resolves; `on_started` is called once
/// every listener is bound. `metrics` is the process's Prometheus recorder
/// handle (installed by the binary), rendered at `/metrics`.
pub async fn run(
    config: Config,
    metrics: Option<PrometheusHandle>,
    on_started: impl FnOnce(&Started),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    crate::metric_families::register(&config);
    let data = DataDir::create(&config.data_dir)?;
    let dev_app = if config.apps.is_empty() {
        Some(data.dev_app()?)
    } else {
        None
    };
    let apps = Arc::new(AppDirectory::from_config(&config, dev_app.as_ref()));

    let store_config = StoreConfig::default()
        .with_default_ttl(Duration::from_secs(config.store.default_ttl_secs))?
        .with_max_messages_per_stream(config.store.max_messages_per_stream)?
        .with_uplink_retention(Duration::from_secs(config.store.uplink_retention_secs))?
        .with_cache_size(usize::try_from(config.store.cache_mib << 20).unwrap_or(usize::MAX))?
        .with_commit_linger(Duration::from_micros(config.store.commit_linger_us))?
        .with_position_flush_interval(Duration::from_millis(config.store.position_flush_ms))?;
    let store = Arc::new(RedbStore::open(data.store_path(), store_config)?);

    let (tls, fingerprint) = match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => {
            let tls = TlsServerConfig::from_pem_files(cert, key)
                .await
                .map_err(|e| RunError::Tls(e.to_string()))?;
            let fingerprint = tls.leaf_fingerprint();
            (tls, fingerprint)
        }
        _ => {
            let (tls, fingerprint) = TlsServerConfig::self_signed_in(
                data.root(),
                ["localhost".to_string(), "127.0.0.1".to_string()],
            )
            .await
            .map_err(|e| RunError::Tls(e.to_string()))?;
            (tls, Some(fingerprint))
        }
    };

    let channel = config
        .limits
        .channel_config(&config.heartbeat)
        .map_err(|e| RunError::Config(e.to_string()))?;
    let mut tunnel = TunnelConfig::default();
    tunnel
        .max_frame_length(config.limits.max_frame_length)
        .map_err(|e| RunError::Config(e.to_string()))?
        .handshake_timeout(Duration::from_secs(
            config.limits.handshake_timeout_secs.into(),
        ));
    // --- MQTT access ---
    let (mqtt_tls, mqtt_tunnel) = (tls.clone(), tunnel.clone());
    // --- end MQTT access ---
    let mut gateway_config = GatewayConfig::default();
    gateway_config
        .channel(channel)
        .tunnel(tunnel)
        .default_ttl(Duration::from_secs(config.store.default_ttl_secs))
        .max_connections(
            (config.limits.max_connections > 0).then_some(config.limits.max_connections),
        )
        .max_handshakes(config.limits.max_handshakes)
        .reconnect_spread(reconnect_spread(&config, &tls));
    let (room_defaults, room_rules) = config.rooms.resolve();
    gateway_config
        .rooms(room_defaults)
        .max_rooms(config.rooms.max_rooms)
        .max_rooms_per_app(config.rooms.max_rooms_per_app)
        .max_room_joins(config.rooms.max_joins_per_connection)
        .max_uplink_in_flight(config.limits.max_uplink_in_flight)
        .takeover(config.limits.takeover);
    for app in config.apps.iter().filter(|app| !app.biz.is_empty()) {
        gateway_config.businesses(app.id.clone(), app.biz.iter().map(|b| b.id.clone()));
    }
    for (app, pattern, room_config) in room_rules {
        gateway_config.room_config(app, pattern, room_config);
    }

    let http_client = reqwest::Client::builder()
        .build()
        .map_err(|e| RunError::Config(format!("http client: {e}")))?;
    // Receipts (issue 18): the status table's ledger is a file of its own.
    let ledger = crate::receipts::Ledger::open(&data.root().join(crate::receipts::LEDGER_FILE))
        .map_err(|e| RunError::Config(e.to_string()))?;
    let receipts = Arc::new(crate::receipts::Receipts::new(
        &config.receipts,
        &apps,
        Some(ledger),
    ));
    let receipts_shutdown = CancellationToken::new();
    let receipts_task = receipts.spawn(http_client.clone(), receipts_shutdown.clone());
    let mut builder = Gateway::builder()
        .store(store.clone())
        .receipts(receipts.clone());
    if config.cluster.enabled() {
        let cluster = config
            .cluster
            .connect(&config.store)
            .await
            .map_err(|e| RunError::Cluster(e.to_string()))?;
        tracing::info!(node = %cluster.node(), epoch = cluster.epoch(), "cluster node");
        builder = builder.engine(pike_jetstream::JetStreamEngine::factory(cluster));
    }
    let mut builder = builder
        .authenticator(TokenAuthenticator::new(apps.clone(), http_client.clone()))
        .uplink(crate::webhook::shared(&apps, http_client))
        .apps(apps.ids().map(str::to_owned))
        .config(gateway_config);
    if let Some(addr) = config.listen.tcp {
        builder = builder.tcp(addr);
    }
    if let Some(addr) = config.listen.tls {
        builder = builder.tls(addr, tls.clone());
    }
    if let Some(addr) = config.listen.quic {
        builder = builder.quic(addr, tls.clone());
    }
    // Devices over WebSocket (`GET /v1/ws` on the HTTP listener), handed to
    // the gateway as the transport `ws`.
    let mut ws_transport = None;
    if let Some(addr) = config.listen.http
        && config.http.websocket
    {
        let (sender, listener) = tunnelkit::handed_listener(addr, WS_BACKLOG);
        builder = builder.handed("ws", listener);
        ws_transport = Some(sender);
    }
    // --- MQTT access (docs/mqtt.md): MQTT connections translated into Pike
    // connections handed to the gateway as the transport `mqtt`.
    let mut mqtt_gateway = None;
    if config.mqtt.enabled() {
        let local = config
            .mqtt
            .listen
            .or(config.mqtt.tls_listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (sender, listener) = tunnelkit::handed_listener(local, crate::mqtt::HANDED_BACKLOG);
        builder = builder.handed("mqtt", listener);
        mqtt_gateway = Some(sender);
    }
    // --- end MQTT access ---
    let gateway = builder.bind().await?;
    let mut listening = gateway.local_addrs();
    // --- MQTT access ---
    let mqtt_shutdown = CancellationToken::new();
    if let Some(sender) = mqtt_gateway {
        let bound = crate::mqtt::start(
            &config.mqtt,
            &mqtt_tls,
            mqtt_tunnel,
            sender,
            mqtt_shutdown.clone(),
        )
        .await
        .map_err(|(addr, source)| RunError::MqttBind { addr, source })?;
        listening.extend(bound);
    }
    // --- end MQTT access ---

    let push = gateway.push_handle();
    // Expiry notices check the engine's positions first: an ack made on
    // another cluster node is not reported as `expired`.
    receipts.check_positions(push.clone());
    let http_shutdown = CancellationToken::new();
    let mut http_task = None;
    if let Some(addr) = config.listen.http {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::HttpBind { addr, source })?;
        let name = if config.http.tls { "https" } else { "http" };
        listening.push((name, listener.local_addr().unwrap_or(addr)));
        let http = &config.http;
        let state = crate::http::HttpState::new(push.clone(), apps.clone(), metrics.clone())
            .with_body_limit(http.body_limit(config.limits.max_frame_length))
            .with_request_timeout(Duration::from_secs(http.request_timeout_secs.into()))
            .with_max_in_flight(http.max_in_flight)
            .with_max_push_connections(http.max_push_connections)
            .with_stats_sampling(crate::stats::SAMPLE_EVERY)
            .with_receipts(receipts.clone());
        let state = match ws_transport {
            Some(sender) => state.with_ws_transport(sender),
            None => state,
        };
        let mut serve_config = crate::http::ServeConfig::default()
            .with_max_connections(http.max_connections)
            .with_header_read_timeout(Duration::from_secs(http.header_read_timeout_secs.into()))
            .with_write_timeout(Duration::from_secs(http.request_timeout_secs.into()));
        if http.tls {
            serve_config = serve_config.with_tls(&tls);
        }
        let router = crate::http::router(state);
        let signal = http_shutdown.clone().cancelled_owned();
        http_task = Some(tokio::spawn(crate::http::serve(
            listener,
            router,
            serve_config,
            signal,
        )));
    }

    let upkeep = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            let mut ticks = 0u64;
            loop {
                tick.tick().await;
                ticks += 1;
                if let Some(metrics) = &metrics {
                    metrics.run_upkeep();
                }
                if !ticks.is_multiple_of(12) {
                    continue;
                }
                match store.expire(crate::unix_ms()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "expired stored messages"),
                    Err(e) => tracing::warn!(error = %e, "store expiry failed"),
                }
            }
        })
    };

    on_started(&Started {
        listening,
        dev_app,
        fingerprint,
        data_dir: data.root().to_owned(),
    });

    gateway.serve_with_shutdown(shutdown).await;
    mqtt_shutdown.cancel(); // MQTT access
    http_shutdown.cancel();
    if let Some(task) = http_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    upkeep.abort();
    // The status table's last changes go to its ledger.
    receipts_shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), receipts_task).await;
    if let Err(e) = store.flush().await {
        tracing::warn!(error = %e, "final store flush failed");
    }
    Ok(())
}

/// The crash-reconnect window's sizing: the configured handshake rate, or
/// (`reconnect_rate = 0`) the ceiling measured now with the gateway's own
/// certificate ([`crate::handshake_ceiling`]).
fn reconnect_spread(config: &Config, tls: &TlsServerConfig) -> ReconnectSpread {
    let spread = ReconnectSpread::new(
        Some(config.limits.reconnect_rate),
        Duration::from_secs(1),
        Duration::from_secs(config.limits.reconnect_window_max_secs.into()),
    );
    if config.limits.reconnect_rate != 0 {
        return spread;
    }
    match crate::handshake_ceiling::handshakes_per_worker(tls) {
        Some(rate) => {
            tracing::info!(
                handshakes_per_sec_per_worker = rate,
                "TLS handshake ceiling measured; it sizes the advised crash-reconnect window"
            );
            spread.with_rate_per_worker(rate)
        }
        None => spread,
    }
}
