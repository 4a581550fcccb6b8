//! The peers' workload generators (`xtask bench-client <workload> --proto
//! mqtt|nats ...`) for S2–S7, by the contract in the harness's
//! documentation: the same flags and JSON lines as `pike bench
//! <workload>`.
//!
//! One process, one thread (the harness pins it to one CPU): a `LocalSet`
//! of one task per receiving connection, a writer task per sending
//! connection, and the driver ([`sweep`]) that runs the open-loop steps.
//! Receivers read into one shared buffer (a partial frame carries over per
//! connection), scan frames in place ([`mqtt::scan`], [`nats::scan`]) and
//! record `now - scheduled` of the current step's window into one
//! HdrHistogram.
//!
//! Workloads ([`fanout`], [`unicast`], [`group`], [`uplink`]) are plans:
//! who subscribes to what, who publishes, and where message `k` goes.
//!
//! Pike mode (`unicast --proto mqtt --pike-app A --pike-biz B
//! --token-secret S --api IP:PORT --api-key K`): the same MQTT devices log
//! in to pike-server's MQTT listener ([`pike_mqtt`]) and the publisher is
//! a backend pushing through `POST /v1/push/batch` ([`http_push`]), as
//! `pike bench unicast --batch` does for Pike devices.

pub(crate) mod conn;
mod fanout;
mod group;
mod http_push;
pub(crate) mod mqtt;
pub(crate) mod nats;
pub(crate) mod pike_mqtt;
mod stamp;
mod sweep;
pub(crate) mod tls;
mod unicast;
mod uplink;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use self::pike_mqtt::{PikeLogin, PikeLoginArgs};
use super::client::{Proto, parse_source_net};

/// A workload of `bench-client` besides `idle`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Workload {
    Fanout,
    Unicast,
    Group,
    Uplink,
}

impl Workload {
    pub(crate) fn parse(word: &str) -> Option<Self> {
        match word {
            "fanout" => Some(Self::Fanout),
            "unicast" => Some(Self::Unicast),
            "group" => Some(Self::Group),
            "uplink" => Some(Self::Uplink),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Fanout => "fanout",
            Self::Unicast => "unicast",
            Self::Group => "group",
            Self::Uplink => "uplink",
        }
    }
}

/// The command line of a workload.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GenOptions {
    pub(crate) workload: Workload,
    pub(crate) proto: Proto,
    pub(crate) server: SocketAddr,
    pub(crate) source_net: [u8; 3],
    pub(crate) sources: u8,
    pub(crate) concurrency: usize,
    pub(crate) login_timeout: Duration,
    pub(crate) connect_deadline: Duration,
    /// Payload bytes (at least the stamp's 20).
    pub(crate) size: usize,
    pub(crate) rates: Vec<u64>,
    pub(crate) warmup: Duration,
    pub(crate) step: Duration,
    pub(crate) drain: Duration,
    /// Members (fanout) or devices (the others).
    pub(crate) population: usize,
    /// First device number (topics `d/<first + i>` ...).
    pub(crate) first: u64,
    pub(crate) publishers: usize,
    pub(crate) group_size: usize,
    /// Percent of members per second that reconnect (fanout).
    pub(crate) churn: f64,
    /// Percent of members that never read (fanout).
    pub(crate) slow: f64,
    /// Client-id prefix (unique per process by default: MQTT servers drop
    /// the older of two sessions with the same id).
    pub(crate) id_prefix: String,
    /// MQTT QoS of the subscriptions and publishes: 0, or 1 (acknowledged:
    /// subscribers PUBACK, a message counts as sent when its PUBACK came).
    pub(crate) qos: u8,
    /// Unacknowledged QoS 1 messages per publisher connection, at most.
    pub(crate) inflight: usize,
    /// Pike mode: the devices log in to pike-server's MQTT listener.
    pub(crate) pike: Option<PikeLogin>,
    /// Pike mode: the HTTP API the publisher pushes through.
    pub(crate) api: Option<SocketAddr>,
    pub(crate) api_key: String,
    /// Pike mode: most pushes per `POST /v1/push/batch`.
    pub(crate) batch: usize,
    /// Pike mode: HTTP connections, one request in flight on each.
    pub(crate) http_connections: usize,
}

impl GenOptions {
    fn defaults(workload: Workload) -> Self {
        Self {
            workload,
            proto: Proto::Mqtt,
            server: SocketAddr::from(([127, 0, 0, 1], 1883)),
            source_net: [127, 0, 1],
            sources: 32,
            concurrency: 256,
            login_timeout: Duration::from_secs(30),
            connect_deadline: Duration::from_secs(120),
            size: 64,
            rates: vec![1000],
            warmup: Duration::from_secs(2),
            step: Duration::from_secs(6),
            drain: Duration::from_secs(2),
            population: match workload {
                Workload::Uplink => 1000,
                _ => 9000,
            },
            first: 0,
            publishers: match workload {
                Workload::Fanout => 1,
                _ => 4,
            },
            group_size: 100,
            churn: 0.0,
            slow: 0.0,
            id_prefix: format!("x{:x}", std::process::id()),
            qos: 0,
            inflight: 1000,
            pike: None,
            api: None,
            api_key: String::new(),
            batch: 100,
            http_connections: 32,
        }
    }

    /// Parses the arguments after the workload word (`--name value`).
    pub(crate) fn parse(workload: Workload, args: &[String]) -> Result<Self, String> {
        let mut o = Self::defaults(workload);
        let mut pike = PikeLoginArgs::default();
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let value = args
                .next()
                .ok_or_else(|| format!("`{flag}` needs a value"))?;
            let bad = |what: &str| format!("bad value for `{flag}`: {value:?} ({what})");
            let secs = |v: &str| v.parse::<u64>().map(Duration::from_secs);
            let count = |v: &str| v.parse::<usize>().map_err(|_| bad("count"));
            let percent = |v: &str| match v.parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
                _ => Err(bad("percent, 0 to 100")),
            };
            if pike.take(flag, value) {
                continue;
            }
            match flag.as_str() {
                "--proto" => o.proto = Proto::parse(value).ok_or_else(|| bad("mqtt or nats"))?,
                "--api" => o.api = Some(value.parse().map_err(|_| bad("ip:port"))?),
                "--api-key" => o.api_key = value.clone(),
                "--batch" => match count(value)? {
                    n @ 1..=1000 => o.batch = n,
                    _ => return Err(bad("1 to 1000 pushes")),
                },
                "--http-connections" => match count(value)? {
                    n @ 1..=1024 => o.http_connections = n,
                    _ => return Err(bad("1 to 1024")),
                },
                "--server" => o.server = value.parse().map_err(|_| bad("ip:port"))?,
                "--source-net" => {
                    o.source_net = parse_source_net(value).ok_or_else(|| bad("127.x.y"))?
                }
                "--sources" => o.sources = value.parse().map_err(|_| bad("0..=255"))?,
                "--concurrency" => o.concurrency = count(value)?.max(1),
                "--login-timeout" => o.login_timeout = secs(value).map_err(|_| bad("seconds"))?,
                "--connect-deadline" => {
                    o.connect_deadline = secs(value).map_err(|_| bad("seconds"))?
                }
                "--size" => o.size = count(value)?,
                "--rates" => {
                    o.rates = value
                        .split(',')
                        .map(|r| r.trim().parse::<u64>().ok().filter(|r| *r > 0))
                        .collect::<Option<Vec<_>>>()
                        .filter(|r| !r.is_empty())
                        .ok_or_else(|| bad("comma-separated positive rates"))?
                }
                "--warmup" => o.warmup = secs(value).map_err(|_| bad("seconds"))?,
                "--step" => o.step = secs(value).map_err(|_| bad("seconds"))?,
                "--drain" => o.drain = secs(value).map_err(|_| bad("seconds"))?,
                "--members" | "--devices" => o.population = count(value)?,
                "--first" => o.first = value.parse().map_err(|_| bad("number"))?,
                "--publishers" => o.publishers = count(value)?,
                "--group-size" => o.group_size = count(value)?,
                "--churn" => o.churn = percent(value)?,
                "--slow" => o.slow = percent(value)?,
                "--id-prefix" => o.id_prefix = value.clone(),
                "--qos" => {
                    o.qos = match value.as_str() {
                        "0" => 0,
                        "1" => 1,
                        _ => return Err(bad("0 or 1")),
                    }
                }
                "--inflight" => match count(value)? {
                    n @ 1..=mqtt::IdPool::CAPACITY => o.inflight = n,
                    _ => return Err(bad("1 to 65535 packet ids")),
                },
                other => {
                    return Err(format!(
                        "unknown option `{other}` for `bench-client {}`",
                        workload.name()
                    ));
                }
            }
        }
        if o.population == 0 {
            return Err("`--members`/`--devices` must be at least 1".into());
        }
        if o.publishers == 0 || o.group_size == 0 {
            return Err("`--publishers` and `--group-size` must be at least 1".into());
        }
        if o.step.is_zero() {
            return Err("`--step` must be at least 1 second".into());
        }
        if (o.churn > 0.0 || o.slow > 0.0) && workload != Workload::Fanout {
            return Err("`--churn` and `--slow` belong to `fanout`".into());
        }
        if o.qos == 1 && o.proto != Proto::Mqtt {
            return Err(format!(
                "`--qos 1` is MQTT's acknowledged delivery: not available with `--proto {}` \
                 (NATS core has no acknowledgements)",
                o.proto.name()
            ));
        }
        if o.qos == 1 && !matches!(workload, Workload::Fanout | Workload::Unicast) {
            return Err(format!(
                "`--qos 1` belongs to `fanout` and `unicast`, not `{}`",
                workload.name()
            ));
        }
        o.pike = pike.finish()?;
        if o.pike.is_some() {
            if o.proto != Proto::Mqtt || workload != Workload::Unicast || o.qos != 0 {
                return Err(
                    "pike mode (`--pike-app` ...) runs `unicast --proto mqtt` at QoS 0".into(),
                );
            }
            if o.api.is_none() || o.api_key.is_empty() {
                return Err("pike mode needs `--api IP:PORT` and `--api-key KEY`".into());
            }
            if !pike_mqtt::is_name(&o.id_prefix) {
                return Err("pike mode: `--id-prefix` must be letters, digits, `-`, `_`".into());
            }
        }
        o.size = o.size.max(stamp::STAMP_LEN);
        Ok(o)
    }

    fn source_ips(&self) -> Vec<IpAddr> {
        let [a, b, c] = self.source_net;
        (1..=self.sources)
            .map(|d| IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
            .collect()
    }
}

/// Runs a workload (in its own process, on a current-thread runtime);
/// prints the JSON lines on stdout, progress on stderr.
pub(crate) async fn run(options: GenOptions) -> Result<(), String> {
    let plan = match options.workload {
        Workload::Fanout => fanout::plan(&options),
        Workload::Unicast => unicast::plan(&options),
        Workload::Group => group::plan(&options),
        Workload::Uplink => uplink::plan(&options),
    };
    sweep::run(options, plan).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_workload_options() {
        let o = GenOptions::parse(
            Workload::Fanout,
            &args(&[
                "--proto",
                "nats",
                "--server",
                "127.0.0.1:4222",
                "--members",
                "500",
                "--rates",
                "10,100",
                "--step",
                "2",
                "--warmup",
                "1",
                "--drain",
                "1",
                "--churn",
                "2.5",
                "--size",
                "8",
                "--source-net",
                "127.0.7",
                "--sources",
                "2",
            ]),
        )
        .unwrap();
        assert_eq!(o.proto, Proto::Nats);
        assert_eq!(o.population, 500);
        assert_eq!(o.rates, [10, 100]);
        assert_eq!(o.step, Duration::from_secs(2));
        assert_eq!(o.churn, 2.5);
        assert_eq!(o.size, stamp::STAMP_LEN, "room for the stamp");
        assert_eq!(o.publishers, 1);
        assert_eq!(o.source_ips().len(), 2);
        let u = GenOptions::parse(Workload::Uplink, &[]).unwrap();
        assert_eq!((u.population, u.publishers), (1000, 4));
        assert_eq!((u.qos, u.inflight), (0, 1000));
        let q = GenOptions::parse(
            Workload::Unicast,
            &args(&["--qos", "1", "--inflight", "65535"]),
        )
        .unwrap();
        assert_eq!((q.qos, q.inflight), (1, 65_535));
        let q =
            GenOptions::parse(Workload::Fanout, &args(&["--qos", "0", "--proto", "nats"])).unwrap();
        assert_eq!(q.qos, 0);
    }

    #[test]
    fn pike_mode_options() {
        let pike = [
            "--pike-app",
            "bench",
            "--pike-biz",
            "bench",
            "--token-secret",
            "s",
            "--api",
            "127.0.0.1:9380",
            "--api-key",
            "k",
        ];
        let o = GenOptions::parse(
            Workload::Unicast,
            &args(&[&pike[..], &["--batch", "50", "--http-connections", "8"]].concat()),
        )
        .unwrap();
        assert_eq!(o.pike.as_ref().map(|p| p.biz.as_str()), Some("bench"));
        assert_eq!(o.api, Some("127.0.0.1:9380".parse().unwrap()));
        assert_eq!((o.batch, o.http_connections), (50, 8));
        let without = |drop: &str| -> Vec<&str> {
            let at = pike.iter().position(|a| *a == drop).unwrap();
            [&pike[..at], &pike[at + 2..]].concat()
        };
        let parse = |w, a: &[&str]| GenOptions::parse(w, &args(a));
        assert!(parse(Workload::Unicast, &without("--api")).is_err());
        assert!(parse(Workload::Unicast, &without("--api-key")).is_err());
        assert!(parse(Workload::Unicast, &without("--token-secret")).is_err());
        assert!(parse(Workload::Fanout, &pike).is_err(), "unicast only");
        assert!(parse(Workload::Unicast, &[&pike[..], &["--qos", "1"]].concat()).is_err());
        assert!(
            parse(
                Workload::Unicast,
                &[&pike[..], &["--proto", "nats"]].concat()
            )
            .is_err()
        );
        assert!(
            parse(
                Workload::Unicast,
                &[&pike[..], &["--id-prefix", "a:b"]].concat()
            )
            .is_err()
        );
        assert!(
            parse(
                Workload::Unicast,
                &[&pike[..], &["--batch", "1001"]].concat()
            )
            .is_err()
        );
        assert!(
            GenOptions::parse(Workload::Unicast, &[])
                .unwrap()
                .pike
                .is_none()
        );
    }

    #[test]
    fn refuses_bad_workload_options() {
        let parse = |w, a: &[&str]| GenOptions::parse(w, &args(a));
        assert!(parse(Workload::Fanout, &["--rates", "10,x"]).is_err());
        assert!(parse(Workload::Fanout, &["--rates", "0"]).is_err());
        assert!(parse(Workload::Fanout, &["--churn", "101"]).is_err());
        assert!(parse(Workload::Unicast, &["--slow", "5"]).is_err());
        assert!(parse(Workload::Group, &["--group-size", "0"]).is_err());
        assert!(parse(Workload::Fanout, &["--members"]).is_err());
        assert!(parse(Workload::Fanout, &["--hold", "3"]).is_err());
        assert!(parse(Workload::Unicast, &["--proto", "nats", "--qos", "1"]).is_err());
        assert!(parse(Workload::Fanout, &["--qos", "2"]).is_err());
        assert!(parse(Workload::Group, &["--qos", "1"]).is_err());
        assert!(parse(Workload::Fanout, &["--inflight", "0"]).is_err());
        assert!(parse(Workload::Fanout, &["--inflight", "65536"]).is_err());
        assert_eq!(Workload::parse("group"), Some(Workload::Group));
        assert_eq!(Workload::parse("idle"), None);
    }
}
