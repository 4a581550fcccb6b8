//! Spike: the NATS JetStream mechanics Pike's cluster engine needs, checked
//! against a real 3-node nats-server 2.15 cluster on loopback
//! (`../ci-install.sh start`). Usage: `pike-cluster-spike <test>...` with
//! tests a (stream), b (catch-up), c (kv), d (presence), e (subscriptions),
//! f-leader / f-connected (one node SIGKILLed), f-outage (all nodes).

mod a_stream;
mod b_catchup;
mod c_kv;
mod common;
mod d_presence;
mod e_subs;
mod f_failover;
mod g_resume;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let tests: Vec<String> = std::env::args().skip(1).collect();
    for test in &tests {
        println!("\n================ {test}");
        let t = std::time::Instant::now();
        let result = match test.as_str() {
            "a" => a_stream::run().await,
            "b" => b_catchup::run().await,
            "b2" => b_catchup::run_headers().await,
            "c" => c_kv::run().await,
            "d" => d_presence::run().await,
            "d2" => d_presence::run_storm().await,
            "e" => e_subs::run().await,
            "e2" => e_subs::run_memory().await,
            "f-leader" => f_failover::run("leader").await,
            "f-connected" => f_failover::run("connected").await,
            "f-follower" => f_failover::run("follower").await,
            "f-outage" => f_failover::outage().await,
            "g" => g_resume::run().await,
            other => Err(format!("unknown test {other}").into()),
        };
        match result {
            Ok(()) => println!("---- {test}: done in {:.1}s", t.elapsed().as_secs_f64()),
            Err(e) => {
                println!("---- {test}: FAILED: {e}");
                std::process::exit(1);
            }
        }
    }
}
