//! `file-service mcp`: MCP on stdin/stdout for a desktop agent, forwarded message by message
//! to a running server's `/mcp` (rmcp's stdio transport on one side, its streamable HTTP
//! client on the other). Logs go to stderr; stdout carries only the protocol.

use std::time::Duration;

use rmcp::model::{ClientJsonRpcMessage, ErrorData, ServerJsonRpcMessage};
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::transport::streamable_http_client::{StreamableHttpClientTransportConfig, StreamableHttpError};
use rmcp::transport::{StreamableHttpClientTransport, Transport};
use rmcp::{RoleClient, RoleServer};

/// How long, once the server's side has ended, replies still being sent get to finish.
const DRAIN: Duration = Duration::from_secs(5);

/// Forwards between stdin/stdout and the server's MCP endpoint at `url` until stdin closes
/// or the server's side ends. A request the server cannot be asked (refused token, server
/// down) gets a JSON-RPC error naming the cause, so the agent shows why.
pub async fn run_bridge(url: &str, token: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().build()?;
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_string())
        .auth_header(token.to_string())
        .reinit_on_expired_session(true);
    let mut remote = StreamableHttpClientTransport::with_client(client, config);
    let (stdin, stdout) = rmcp::transport::stdio();
    let mut local = AsyncRwTransport::<RoleServer, _, _>::new_server(stdin, stdout);
    // Failed sends come back here as error replies for the agent.
    let (failed_tx, mut failed_rx) = tokio::sync::mpsc::unbounded_channel::<ServerJsonRpcMessage>();
    let mut sending = tokio::task::JoinSet::new();
    tracing::info!(url, "MCP bridge: forwarding stdin/stdout to the server");
    loop {
        tokio::select! {
            message = Transport::<RoleServer>::receive(&mut local) => {
                let Some(message) = message else {
                    tracing::info!("MCP bridge: stdin closed");
                    break;
                };
                let id = match &message {
                    ClientJsonRpcMessage::Request(request) => Some(request.id.clone()),
                    _ => None,
                };
                let send = Transport::<RoleClient>::send(&mut remote, message);
                // A notification is sent before the next message is read: the transport
                // takes a message when its send is first polled, so concurrent sends may
                // reach it out of order, and `initialized` must follow `initialize` and
                // precede every other message (the transport fails otherwise).
                if id.is_none() {
                    if let Err(e) = send.await {
                        tracing::warn!(error = %describe(&e), "MCP bridge: could not forward a notification");
                    }
                    continue;
                }
                // Requests are sent concurrently: a long tool call does not hold up the next.
                let failed = failed_tx.clone();
                let url = url.to_string();
                sending.spawn(async move {
                    if let Err(e) = send.await {
                        let cause = describe(&e);
                        tracing::warn!(error = %cause, "MCP bridge: could not forward a message");
                        let detail = format!("file-service at {url} did not take the request: {cause}");
                        let _ = failed.send(ServerJsonRpcMessage::error(ErrorData::internal_error(detail, None), id));
                    }
                });
            }
            message = Transport::<RoleClient>::receive(&mut remote) => {
                match message {
                    Some(message) => Transport::<RoleServer>::send(&mut local, message).await?,
                    None => {
                        tracing::warn!("MCP bridge: the connection to the server ended");
                        break;
                    }
                }
            }
            Some(reply) = failed_rx.recv() => Transport::<RoleServer>::send(&mut local, reply).await?,
            Some(_) = sending.join_next(), if !sending.is_empty() => {}
        }
    }
    // Errors of sends still under way reach the agent before the bridge exits.
    let _ = tokio::time::timeout(DRAIN, async { while sending.join_next().await.is_some() {} }).await;
    drop(failed_tx);
    while let Ok(reply) = failed_rx.try_recv() {
        Transport::<RoleServer>::send(&mut local, reply).await?;
    }
    let _ = Transport::<RoleClient>::close(&mut remote).await;
    let _ = Transport::<RoleServer>::close(&mut local).await;
    Ok(())
}

/// Why the server did not take a message, as the agent's user can act on it.
fn describe(error: &StreamableHttpError<reqwest::Error>) -> String {
    match error {
        StreamableHttpError::AuthRequired(_) => {
            "401 Unauthorized: the server refused the token; pass a valid one with --token \
             (`file-service token --user N` prints one on the server's machine)"
                .to_string()
        }
        other => other.to_string(),
    }
}
