//! TEST SUPPORT ONLY: `pods/{name}/portforward` as the kubelet serves it over WebSocket
//! (`v4.channel.k8s.io`): for each port a data and an error channel, each opened by a frame with
//! the port number, then data frames prefixed with the channel. Every forward connects to the
//! stand-in's backend address (the simulator), whatever the pod.

use axum::{
    extract::{
        Path, Query, State,
        ws::{Message, WebSocket, WebSocketUpgrade},
    },
    response::{IntoResponse, Response},
};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{St, status};

pub async fn portforward(
    State(st): State<St>,
    Path((ns, pod)): Path<(String, String)>,
    Query(q): Query<std::collections::BTreeMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    st.requests.lock().unwrap().push(format!("GET /api/v1/namespaces/{ns}/pods/{pod}/portforward"));
    if st.get("pods", &ns, &pod).is_none() {
        return status(404, "NotFound", &format!("pods \"{pod}\" not found"));
    }
    let port: u16 =
        q.get("ports").and_then(|p| p.split(',').next()).and_then(|p| p.parse().ok()).unwrap_or(0);
    let Some(backend) = *st.backend.lock().unwrap() else {
        return status(500, "InternalError", "the stand-in has no backend for port-forwards");
    };
    ws.protocols(["v4.channel.k8s.io"])
        .on_upgrade(move |socket| bridge(socket, port, backend))
        .into_response()
}

/// Bridges a port-forward WebSocket to `backend` (also the real-cluster node agent's).
pub async fn bridge(socket: WebSocket, port: u16, backend: std::net::SocketAddr) {
    let (mut sink, mut stream) = socket.split();
    let [lo, hi] = port.to_le_bytes();
    if sink.send(Message::Binary(vec![0, lo, hi].into())).await.is_err()
        || sink.send(Message::Binary(vec![1, lo, hi].into())).await.is_err()
    {
        return;
    }
    let Ok(tcp) = tokio::net::TcpStream::connect(backend).await else {
        let _ = sink.send(Message::Binary([&[1u8][..], b"connection refused"].concat().into())).await;
        return;
    };
    let (mut rd, mut wr) = tcp.into_split();
    let up = async {
        while let Some(Ok(msg)) = stream.next().await {
            match msg {
                Message::Binary(b) if b.len() > 1 && b[0] == 0 && wr.write_all(&b[1..]).await.is_err() => {
                    break;
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = wr.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut frame = Vec::with_capacity(n + 1);
                    frame.push(0);
                    frame.extend_from_slice(&buf[..n]);
                    if sink.send(Message::Binary(frame.into())).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    };
    tokio::join!(up, down);
}
