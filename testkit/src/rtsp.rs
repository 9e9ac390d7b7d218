//! A test RTSP camera: ffmpeg 5.1 cannot *serve* RTSP, so a second ffmpeg encodes a clip to RTP
//! and a minimal relay here speaks RTSP to the client under test.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};
use tokio::process::{Child, Command};
use tokio::sync::broadcast;

/// An RTSP camera made of two parts, because ffmpeg 5.1 cannot *serve* RTSP (`-rtsp_flags
/// listen` is a demuxer option: it receives a pushed stream). A second ffmpeg encodes vtest.avi
/// in real time to RTP/H.264 over UDP; this relay answers OPTIONS, DESCRIBE, SETUP and PLAY
/// and forwards the RTP packets interleaved on the RTSP connection (`-rtsp_transport tcp`).
#[derive(Debug)]
pub struct RtspCamera {
    pub url: String,
    video: PathBuf,
    rtp_port: u16,
    encoder: Option<Child>,
    relay: tokio::task::JoinHandle<()>,
}

impl RtspCamera {
    /// Serves `video` (looped, real time) as an RTSP camera on a free loopback port.
    pub async fn start(video: PathBuf) -> Self {
        let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let rtp_port = rtp.local_addr().unwrap().port();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("rtsp://{}/cam", listener.local_addr().unwrap());
        let (packets, _) = broadcast::channel::<Arc<Vec<u8>>>(256);
        let tx = packets.clone();
        let udp = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok(n) = rtp.recv(&mut buf).await {
                let _ = tx.send(Arc::new(buf[..n].to_vec()));
            }
        });
        let relay = tokio::spawn(async move {
            let _udp = AbortOnDrop(udp);
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(rtsp_session(socket, packets.subscribe()));
            }
        });
        let mut camera = Self {
            url,
            video,
            rtp_port,
            encoder: None,
            relay,
        };
        camera.start_encoder();
        camera
    }

    /// Starts (again) the encoder feeding the relay.
    pub fn start_encoder(&mut self) {
        let child = Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-re"])
            .args(["-stream_loop", "-1", "-i"])
            .arg(&self.video)
            .args(["-an", "-c:v", "libx264", "-preset", "ultrafast"])
            .args(["-tune", "zerolatency", "-g", "10", "-f", "rtp"])
            .arg(format!("rtp://127.0.0.1:{}", self.rtp_port))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.encoder = Some(child);
    }

    /// Kills the encoder: the camera goes silent while its RTSP session stays open.
    pub async fn kill_encoder(&mut self) {
        if let Some(mut child) = self.encoder.take() {
            child.kill().await.unwrap();
        }
    }
}

impl Drop for RtspCamera {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

const SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=cam\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
                   a=fmtp:96 packetization-mode=1\r\na=control:trackID=0\r\n";

/// One RTSP client: the minimum of RFC 2326 that ffmpeg's client needs.
async fn rtsp_session(
    socket: tokio::net::TcpStream,
    mut packets: broadcast::Receiver<Arc<Vec<u8>>>,
) {
    let (read, mut write) = socket.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut method = String::new();
        let mut cseq = String::new();
        let mut transport = String::new();
        let mut url = String::new();
        loop {
            let mut line = String::new();
            if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if method.is_empty() {
                let mut parts = line.split(' ');
                method = parts.next().unwrap_or("").to_string();
                url = parts.next().unwrap_or("").to_string();
            } else if let Some((k, v)) = line.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "cseq" => cseq = v.trim().to_string(),
                    "transport" => transport = v.trim().to_string(),
                    _ => {}
                }
            }
        }
        let head = format!("RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n");
        let reply = match method.as_str() {
            "OPTIONS" => format!("{head}Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n\r\n"),
            "DESCRIBE" => format!(
                "{head}Content-Base: {url}/\r\nContent-Type: application/sdp\r\n\
                 Content-Length: {}\r\n\r\n{SDP}",
                SDP.len()
            ),
            "SETUP" => format!("{head}Transport: {transport}\r\nSession: 4242\r\n\r\n"),
            "PLAY" => format!("{head}Session: 4242\r\n\r\n"),
            _ => format!("{head}Session: 4242\r\n\r\n"),
        };
        if write.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
        if method == "PLAY" {
            break;
        }
    }
    // From here the client only sends RTCP and keep-alives: drain them, forward RTP.
    let drain = AbortOnDrop(tokio::spawn(async move {
        let mut sink = vec![0u8; 4096];
        while read.read(&mut sink).await.unwrap_or(0) > 0 {}
    }));
    loop {
        let packet = match packets.recv().await {
            Ok(p) => p,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => break,
        };
        let len = u16::try_from(packet.len()).unwrap().to_be_bytes();
        let mut framed = vec![b'$', 0, len[0], len[1]];
        framed.extend_from_slice(&packet);
        if write.write_all(&framed).await.is_err() {
            break;
        }
    }
    drop(drain);
}
