//! The cluster-wide views of a [`PushHandle`]: presence, connection list
//! and count, trace, disconnect and a receipt message's status, asked of every node through the
//! engine ([`Presence::gather`](crate::server::engine::Presence::gather))
//! and merged here. With the embedded engine they are this node's, with
//! `nodes_answered == nodes_expected == 1`.

use super::{DisconnectTarget, PushHandle};
use crate::server::engine::{ClusterView, EngineError, EngineHealth, ViewAnswer, ViewQuery};
use crate::server::receipts::MessageStatus;
use crate::server::registry::{ConnectionInfo, ConnectionPage};
use crate::server::store::StreamKey;
use crate::server::trace::TraceEvent;

impl PushHandle {
    /// The connections logged in as `alias` of `biz` in `app`, on every
    /// node that answered.
    pub async fn cluster_presence(
        &self,
        app: &str,
        biz: &str,
        alias: &str,
    ) -> Result<ClusterView<Vec<ConnectionInfo>>, EngineError> {
        let view = self
            .gather(ViewQuery::Presence(StreamKey::new(app, biz, alias)))
            .await?;
        Ok(view.map(|answers| {
            answers
                .into_iter()
                .filter_map(|a| match a {
                    ViewAnswer::Presence(list) => Some(list),
                    _ => None,
                })
                .flatten()
                .collect()
        }))
    }

    /// One page of `app`'s connections on every node that answered: up to
    /// `limit` after `after` (the `next` of the previous page). The order is
    /// each node's connection number, then the token: oldest first on each
    /// node, interleaved across nodes. A page never splits the connections
    /// that share a number on several nodes, so it can hold up to one per
    /// node more than `limit` when `limit` is below the number of nodes.
    /// `total` is the sum of the nodes' counts.
    pub async fn cluster_connections_page(
        &self,
        app: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<ClusterView<ConnectionPage>, EngineError> {
        let view = self
            .gather(ViewQuery::Connections {
                app: app.to_owned(),
                after: after.unwrap_or(0),
                limit,
            })
            .await?;
        Ok(view.map(|answers| merge_pages(answers, limit)))
    }

    /// Number of open connections on every node that answered.
    pub async fn cluster_connection_count(&self) -> Result<ClusterView<usize>, EngineError> {
        let view = self.gather(ViewQuery::Count).await?;
        Ok(view.map(|answers| {
            answers
                .into_iter()
                .map(|a| match a {
                    ViewAnswer::Count(n) => n,
                    _ => 0,
                })
                .sum()
        }))
    }

    /// The signals of the connection with `token` (live or recently closed,
    /// on whichever node had it), if it belongs to `app`. The traces of a
    /// node that did not answer (a dead one) are not found.
    pub async fn cluster_trace(
        &self,
        app: &str,
        token: &str,
    ) -> Result<ClusterView<Option<Vec<TraceEvent>>>, EngineError> {
        let view = self
            .gather(ViewQuery::Trace {
                app: app.to_owned(),
                token: token.to_owned(),
            })
            .await?;
        Ok(view.map(|answers| {
            answers.into_iter().find_map(|a| match a {
                ViewAnswer::Trace(found) => found,
                _ => None,
            })
        }))
    }

    /// [`disconnect`](Self::disconnect) on every node that answered;
    /// returns how many connections were told to close.
    pub async fn cluster_disconnect(
        &self,
        app: &str,
        target: &DisconnectTarget,
        reason: &str,
    ) -> Result<ClusterView<usize>, EngineError> {
        let view = self
            .gather(ViewQuery::Disconnect {
                app: app.to_owned(),
                target: target.clone(),
                reason: reason.to_owned(),
            })
            .await?;
        Ok(view.map(|answers| {
            answers
                .into_iter()
                .map(|a| match a {
                    ViewAnswer::Disconnected(n) => n,
                    _ => 0,
                })
                .sum()
        }))
    }

    /// The receipt records of message `message_id` of `app` on every node
    /// that answered, merged ([`MessageStatus::merge`]; `None`: no node
    /// that answered has one). `docs/receipts.md`, "The status query".
    pub async fn cluster_message_status(
        &self,
        app: &str,
        message_id: u64,
    ) -> Result<ClusterView<Option<MessageStatus>>, EngineError> {
        let view = self
            .gather(ViewQuery::MessageStatus {
                app: app.to_owned(),
                message_id,
            })
            .await?;
        Ok(view.map(|answers| {
            MessageStatus::merge(answers.into_iter().filter_map(|a| match a {
                ViewAnswer::MessageStatus(found) => found,
                _ => None,
            }))
        }))
    }

    /// The acked position of `device` on the alias stream `stream`, as
    /// the engine stores it (`None`: never acked there, or the engine
    /// cannot say): what every node of a cluster agrees on.
    pub async fn device_position(
        &self,
        stream: StreamKey,
        device: String,
    ) -> Result<Option<u64>, EngineError> {
        Ok(self
            .hub
            .engine
            .inbox
            .position(stream, device)
            .await?
            .map(|p| p.seq))
    }

    /// The engine's health: the embedded engine is always ready; a cluster
    /// node is not while it cannot reach the shared state.
    pub fn engine_health(&self) -> EngineHealth {
        self.hub.engine.presence.health()
    }

    async fn gather(&self, query: ViewQuery) -> Result<ClusterView<Vec<ViewAnswer>>, EngineError> {
        self.hub.engine.presence.gather(query).await
    }
}

/// Merges the nodes' pages of one app (see
/// [`PushHandle::cluster_connections_page`]).
fn merge_pages(answers: Vec<ViewAnswer>, limit: usize) -> ConnectionPage {
    let mut total = 0;
    // Some node has connections after its page.
    let mut more = false;
    let mut all: Vec<(u64, ConnectionInfo)> = Vec::new();
    for answer in answers {
        if let ViewAnswer::Connections {
            total: node_total,
            connections,
            more: node_more,
        } = answer
        {
            total += node_total;
            more |= node_more;
            all.extend(connections);
        }
    }
    all.sort_by(|a, b| (a.0, &a.1.token).cmp(&(b.0, &b.1.token)));
    let mut cut = all.len().min(limit);
    if cut < all.len() {
        // Connections numbered like the last one kept, on other nodes, go
        // to the next page whole: the cursor is a number.
        let split = all[cut].0;
        let group_start = all[..cut]
            .iter()
            .rposition(|c| c.0 != split)
            .map_or(0, |p| p + 1);
        cut = if group_start > 0 {
            group_start
        } else {
            all.iter().take_while(|c| c.0 == split).count()
        };
    }
    more |= cut < all.len();
    all.truncate(cut);
    let next = if more { all.last().map(|c| c.0) } else { None };
    ConnectionPage {
        total,
        connections: all.into_iter().map(|(_, c)| c).collect(),
        next,
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn conn(id: u64, token: &str) -> (u64, ConnectionInfo) {
        (
            id,
            ConnectionInfo {
                token: token.to_owned(),
                app: "a".into(),
                device_id: "d".into(),
                transport: "tcp",
                peer: SocketAddr::from(([127, 0, 0, 1], 1)),
                connected_at_ms: 0,
                logins: Vec::new(),
            },
        )
    }

    fn node(connections: Vec<(u64, ConnectionInfo)>, total: usize, more: bool) -> ViewAnswer {
        ViewAnswer::Connections {
            total,
            connections,
            more,
        }
    }

    fn tokens(page: &ConnectionPage) -> Vec<&str> {
        page.connections.iter().map(|c| c.token.as_str()).collect()
    }

    #[test]
    fn pages_of_two_nodes_interleave_and_never_split_a_number() {
        let a = node(vec![conn(1, "a1"), conn(2, "a2"), conn(3, "a3")], 5, true);
        let b = node(vec![conn(1, "b1"), conn(3, "b3")], 2, false);
        let page = merge_pages(vec![a, b], 3);
        assert_eq!(page.total, 7);
        // 1a 1b 2a | 3a 3b: the cut falls after 2, no number is split.
        assert_eq!(tokens(&page), ["a1", "b1", "a2"]);
        assert_eq!(page.next, Some(2));
        let a = node(vec![conn(1, "a1"), conn(2, "a2")], 2, false);
        let b = node(vec![conn(2, "b2")], 1, false);
        // A cut inside the group of 2 moves back to the group's start.
        let page = merge_pages(vec![a, b], 2);
        assert_eq!(tokens(&page), ["a1"]);
        assert_eq!(page.next, Some(1));
    }

    #[test]
    fn a_group_wider_than_the_limit_is_kept_whole_and_the_last_page_has_no_next() {
        let a = node(vec![conn(4, "a4")], 1, false);
        let b = node(vec![conn(4, "b4")], 1, false);
        let page = merge_pages(vec![a, b], 1);
        assert_eq!(tokens(&page), ["a4", "b4"]);
        assert_eq!(page.next, None, "nothing is left");
        let page = merge_pages(vec![node(Vec::new(), 0, false)], 10);
        assert_eq!(page, ConnectionPage::default());
    }
}
