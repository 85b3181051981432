//! The WebSocket upgrade for MQTT over WebSocket, as RabbitMQ's `rabbitmq_web_mqtt` plugin
//! serves it: path `/ws`, subprotocol `mqtt` (or the older `mqttv3.1`), binary frames.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

/// The HTTP path MQTT clients upgrade on.
pub(crate) const PATH: &str = "/ws";

/// Subprotocols accepted, in order of preference (MQTT 3.1.1 §6 and 5.0 §6 name `mqtt`).
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Runs the upgrade on an accepted stream; a client's WebSocket messages may be at most
/// `max_message` bytes (the MQTT packet limit plus room for a few small packets).
pub(crate) async fn accept<S>(
    stream: S,
    max_message: usize,
) -> Result<WebSocketStream<S>, tokio_tungstenite::tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Small buffers: the defaults (128 KiB each way) would dwarf an MQTT connection's state.
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    tokio_tungstenite::accept_hdr_async_with_config(stream, upgrade, Some(config)).await
}

/// Checks the path and picks the subprotocol.
#[allow(clippy::result_large_err)] // tungstenite's callback signature
fn upgrade(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    if request.uri().path() != PATH {
        let mut refusal =
            ErrorResponse::new(Some(format!("MQTT over WebSocket is served on {PATH}\n")));
        *refusal.status_mut() = StatusCode::NOT_FOUND;
        return Err(refusal);
    }
    let offered: Vec<&str> = request
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    if let Some(chosen) = SUBPROTOCOLS.iter().find(|name| {
        offered
            .iter()
            .any(|offered| offered.eq_ignore_ascii_case(name))
    }) {
        response
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(chosen));
    }
    Ok(response)
}
