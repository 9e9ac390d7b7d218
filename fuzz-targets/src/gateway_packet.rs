//! Differential fuzzing of the gateway's MQTT codec against rumqttd's own parser, the broker
//! that receives what the gateway forwards.
//!
//! For any input the gateway accepts, (1) rumqttd reads the client's original bytes as the
//! same packet, field by field (but for the short forms MQTT 5 allows and rumqttd's reader
//! does not, see below), and (2) rumqttd reads the bytes the gateway re-encodes as the
//! same packet too, and so does the gateway itself. The gateway may refuse more than rumqttd
//! (it is stricter on purpose); it may never accept what rumqttd would read differently.

use bytes::BytesMut;
use hub::gateway::codec::{self, Packet, Version};
use hub::gateway::frame::split_frame;
use rumqttd::protocol::{self as r, Protocol};

/// One input: panics if the code under test breaks a property above.
pub fn run(data: &[u8]) {
    // The first byte chooses the connection's version for packets other than CONNECT.
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let mut buf = BytesMut::from(rest);
    let Ok(Some(frame)) = split_frame(&mut buf, 1 << 20) else {
        return;
    };
    let decoded = if frame.kind() == 1 {
        codec::decode_connect(&frame).map(|c| Packet::Connect(Box::new(c)))
    } else {
        let version = if sel & 1 == 0 {
            Version::V311
        } else {
            Version::V5
        };
        codec::decode(&frame, version)
    };
    let Ok(ours) = decoded else {
        return;
    };
    let version = match &ours {
        Packet::Connect(c) => c.version,
        _ if sel & 1 == 0 => Version::V311,
        _ => Version::V5,
    };
    // MQTT 5 lets a DISCONNECT or an acknowledgement end after its reason code, leaving out
    // the property length; rumqttd's reader does not take that short form (the fuzzer found
    // it at once). Harmless, as rumqttd never reads a client's bytes: the gateway's encoding,
    // checked below, always writes the property length. Whatever else rumqttd reads, it must
    // read as the gateway did.
    let short_form = matches!(
        ours,
        Packet::Disconnect(_)
            | Packet::PubAck(_)
            | Packet::PubRec(_)
            | Packet::PubRel(_)
            | Packet::PubComp(_)
    ) && version == Version::V5
        && frame.body().len()
            == if matches!(ours, Packet::Disconnect(_)) {
                1
            } else {
                3
            };
    match reference(version, &frame.bytes) {
        Ok(original) => same(&ours, &original, version, false),
        Err(e) if !short_form => {
            panic!("rumqttd refuses what the gateway accepted ({e:?}): {ours:?}")
        }
        Err(_) => {}
    }

    let mut out = BytesMut::new();
    codec::encode(&ours, version, &mut out);
    let forwarded = reference(version, &out)
        .unwrap_or_else(|e| panic!("rumqttd refuses what the gateway forwards ({e:?}): {ours:?}"));
    same(&ours, &forwarded, version, true);
    let mut again = BytesMut::from(&out[..]);
    let f = split_frame(&mut again, 1 << 20).unwrap().unwrap();
    let reread = if f.kind() == 1 {
        codec::decode_connect(&f).map(|c| Packet::Connect(Box::new(c)))
    } else {
        codec::decode(&f, version)
    }
    .expect("the gateway reads what it wrote");
    assert_eq!(
        strip(reread),
        strip(ours.clone()),
        "encode/decode round trip"
    );
}

fn reference(version: Version, bytes: &[u8]) -> Result<r::Packet, r::Error> {
    let mut b = BytesMut::from(bytes);
    match version {
        Version::V311 => r::v4::V4.read_mut(&mut b, 1 << 21),
        Version::V5 => r::v5::V5.read_mut(&mut b, 1 << 21),
    }
}

/// The packet without what encoding drops (counts of dropped properties).
fn strip(mut p: Packet) -> Packet {
    match &mut p {
        Packet::Connect(c) => {
            c.properties.dropped = 0;
            if let Some(w) = &mut c.will {
                w.properties.dropped = 0;
            }
        }
        Packet::Publish(p) => p.properties.dropped = 0,
        _ => {}
    }
    p
}

/// QoS, DUP and packet id of rumqttd's PUBLISH, whose fields for them are private: read back
/// from its own serialisation (header byte, then the packet id).
fn publish_header(p: &r::Publish) -> (u8, bool, u16) {
    let s = p.serialize();
    (
        (s[0] >> 1) & 3,
        s[0] & 0x08 != 0,
        u16::from_be_bytes([s[1], s[2]]),
    )
}

fn same(ours: &Packet, theirs: &r::Packet, version: Version, forwarded: bool) {
    match (ours, theirs) {
        (Packet::Connect(c), r::Packet::Connect(rc, props, will, wprops, login)) => {
            assert_eq!(c.client_id, rc.client_id);
            assert_eq!(c.keep_alive, rc.keep_alive);
            assert_eq!(c.clean_start, rc.clean_session);
            let user = c.username.clone().unwrap_or_default();
            let pass = c
                .password
                .as_ref()
                .map(|p| String::from_utf8(p.to_vec()).expect("passwords are UTF-8"))
                .unwrap_or_default();
            match login {
                Some(l) => assert_eq!((&user, &pass), (&l.username, &l.password)),
                None => assert!(user.is_empty() && pass.is_empty()),
            }
            match (&c.will, will) {
                (None, None) => {}
                (Some(w), Some(rw)) => {
                    assert_eq!(w.topic.as_bytes(), &rw.topic[..]);
                    assert_eq!(w.payload, rw.message);
                    assert_eq!(w.qos, rw.qos as u8);
                    assert_eq!(w.retain, rw.retain);
                    if version == Version::V5 {
                        let rp = wprops.clone().unwrap_or(r::LastWillProperties {
                            delay_interval: None,
                            payload_format_indicator: None,
                            message_expiry_interval: None,
                            content_type: None,
                            response_topic: None,
                            correlation_data: None,
                            user_properties: Vec::new(),
                        });
                        assert_eq!(w.properties.will_delay, rp.delay_interval);
                        assert_eq!(w.properties.payload_format, rp.payload_format_indicator);
                        assert_eq!(w.properties.message_expiry, rp.message_expiry_interval);
                        if forwarded {
                            assert!(rp.response_topic.is_none() && rp.user_properties.is_empty());
                        }
                    }
                }
                (a, b) => panic!("will: ours {a:?}, rumqttd {b:?}"),
            }
            if version == Version::V5 {
                let p = &c.properties;
                match props {
                    Some(rp) => {
                        assert_eq!(p.session_expiry, rp.session_expiry_interval);
                        assert_eq!(p.receive_maximum, rp.receive_maximum);
                        assert_eq!(p.maximum_packet_size, rp.max_packet_size);
                        assert_eq!(p.topic_alias_maximum, rp.topic_alias_max);
                        assert_eq!(p.request_problem_info, rp.request_problem_info);
                        assert!(rp.authentication_method.is_none());
                        if forwarded {
                            assert!(rp.user_properties.is_empty());
                            assert!(rp.request_response_info.is_none());
                        }
                    }
                    None => assert!(
                        p.session_expiry.is_none()
                            && p.receive_maximum.is_none()
                            && p.maximum_packet_size.is_none()
                            && p.topic_alias_maximum.is_none()
                            && p.request_problem_info.is_none()
                    ),
                }
            }
        }
        (Packet::Publish(p), r::Packet::Publish(rp, props)) => {
            assert_eq!(p.topic.as_bytes(), &rp.topic[..]);
            assert_eq!(p.payload, rp.payload);
            assert_eq!(p.retain, rp.retain);
            let (qos, dup, pkid) = publish_header(rp);
            assert_eq!((p.qos, p.dup), (qos, dup));
            if let Some(id) = p.pkid {
                assert_eq!(id, pkid);
            }
            if version == Version::V5 {
                let rp = props.clone().unwrap_or_default();
                assert_eq!(p.properties.payload_format, rp.payload_format_indicator);
                assert_eq!(p.properties.message_expiry, rp.message_expiry_interval);
                assert!(rp.topic_alias.is_none());
                if forwarded {
                    assert!(rp.response_topic.is_none() && rp.user_properties.is_empty());
                }
            }
        }
        (Packet::Subscribe(s), r::Packet::Subscribe(rs, _)) => {
            assert_eq!(s.pkid, rs.pkid);
            assert_eq!(s.filters.len(), rs.filters.len());
            for ((f, o), rf) in s.filters.iter().zip(&rs.filters) {
                assert_eq!(f, &rf.path);
                assert_eq!(o.qos, rf.qos as u8);
                if version == Version::V5 {
                    assert_eq!(o.no_local, rf.nolocal);
                    assert_eq!(o.retain_as_published, rf.preserve_retain);
                    let rh = match rf.retain_forward_rule {
                        r::RetainForwardRule::OnEverySubscribe => 0,
                        r::RetainForwardRule::OnNewSubscribe => 1,
                        r::RetainForwardRule::Never => 2,
                    };
                    assert_eq!(o.retain_handling, rh);
                }
            }
        }
        (Packet::Unsubscribe(u), r::Packet::Unsubscribe(ru, _)) => {
            assert_eq!(u.pkid, ru.pkid);
            assert_eq!(u.filters, ru.filters);
        }
        (Packet::PubAck(a), r::Packet::PubAck(ra, _)) => assert_eq!(a.pkid, ra.pkid),
        (Packet::PubRec(a), r::Packet::PubRec(ra, _)) => assert_eq!(a.pkid, ra.pkid),
        (Packet::PubRel(a), r::Packet::PubRel(ra, _)) => assert_eq!(a.pkid, ra.pkid),
        (Packet::PubComp(a), r::Packet::PubComp(ra, _)) => assert_eq!(a.pkid, ra.pkid),
        (Packet::PingReq, r::Packet::PingReq(_)) => {}
        (Packet::Disconnect(reason), r::Packet::Disconnect(d, _)) => {
            use r::DisconnectReasonCode as D;
            let want = match reason {
                0x00 => D::NormalDisconnection,
                0x04 => D::DisconnectWithWillMessage,
                0x80 => D::UnspecifiedError,
                0x81 => D::MalformedPacket,
                0x82 => D::ProtocolError,
                0x83 => D::ImplementationSpecificError,
                0x90 => D::TopicNameInvalid,
                0x93 => D::ReceiveMaximumExceeded,
                0x94 => D::TopicAliasInvalid,
                0x95 => D::PacketTooLarge,
                0x96 => D::MessageRateTooHigh,
                0x97 => D::QuotaExceeded,
                0x98 => D::AdministrativeAction,
                0x99 => D::PayloadFormatInvalid,
                other => panic!("the gateway accepted disconnect reason {other:#x}"),
            };
            assert_eq!(d.reason_code, want);
        }
        (a, b) => panic!("ours {a:?}, rumqttd {b:?}"),
    }
}
