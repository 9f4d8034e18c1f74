//! The fake against the server's own codecs: every carrier and codec, both directions.

use std::time::{Duration, Instant};

use super::*;
use crate::engine::Input;
use crate::engine::ToCaller;
use crate::engine::call::MarkId;
use crate::engine::media::{CarrierCodec, Inbound, MediaSession};

/// What the server's session made of the fake's messages.
#[derive(Debug, PartialEq)]
enum Got {
    Audio(usize),
    Dtmf(char),
    Mark(String),
    Stop,
}

fn params() -> BTreeMap<String, String> {
    [("callId", "c-1"), ("token", "t0k")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A fake and the server session it opened.
fn open(carrier: Carrier, codec: AudioCodec, t0: Instant) -> (FakeCarrier, MediaSession) {
    let info = CallInfo {
        custom_parameters: params(),
        ..CallInfo::default()
    };
    let mut fake = FakeCarrier::new(carrier, codec, info, t0).unwrap();
    let mut server = fake.server_codec();
    fake.connect();
    let mut start = None;
    for m in fake.out().iter() {
        if let Inbound::Start(s) = server.parse(m).unwrap() {
            start = Some(s);
        }
    }
    fake.clear_out();
    let start = start.expect("a start");
    assert_eq!(start.codec, fake.codec(), "{carrier}");
    assert_eq!(start.outbound_codec, fake.outbound_codec(), "{carrier}");
    assert_eq!(start.custom_parameters, params(), "{carrier}");
    if carrier != Carrier::Vonage {
        assert_eq!(start.call_id.as_deref(), Some(fake.info().call_id.as_str()));
    }
    let session = MediaSession::new(server, &start).unwrap();
    (fake, session)
}

/// Feeds the fake's pending messages to the server session.
fn deliver(fake: &mut FakeCarrier, session: &mut MediaSession) -> Vec<Got> {
    let mut got = Vec::new();
    for m in fake.out().iter() {
        session
            .handle_message(m, |i| match i {
                Input::CallerAudio { mulaw, .. } => got.push(Got::Audio(mulaw.len())),
                Input::Dtmf(d) => got.push(Got::Dtmf(d)),
                Input::MarkEchoed(m) => got.push(Got::Mark(m.to_owned())),
                Input::CarrierStop => got.push(Got::Stop),
                other => panic!("{other:?}"),
            })
            .unwrap();
    }
    fake.clear_out();
    got
}

/// Feeds the server's pending messages to the fake at `now`.
fn play(session: &mut MediaSession, fake: &mut FakeCarrier, now: Instant) {
    for m in session.out().iter() {
        fake.handle_message(now, m).unwrap();
    }
    session.clear_out();
}

fn mark(speech: u64, frames: u32) -> ToCaller {
    ToCaller::Mark(MarkId {
        speech,
        frames,
        last: false,
    })
}

fn every_stream() -> Vec<(Carrier, AudioCodec)> {
    Carrier::ALL
        .into_iter()
        .flat_map(|c| codecs(c).into_iter().map(move |k| (c, k)))
        .collect()
}

#[test]
fn caller_side_messages_parse_on_the_server() {
    for (carrier, codec) in every_stream() {
        let t0 = Instant::now();
        let (mut fake, mut session) = open(carrier, codec, t0);
        fake.send_audio(&[0x55; 320]);
        fake.send_dtmf('7');
        let stopped = fake.send_stop();
        let got = deliver(&mut fake, &mut session);
        let audio: usize = got
            .iter()
            .map(|g| if let Got::Audio(n) = g { *n } else { 0 })
            .sum();
        // resampling filters may shift a sample or two; Opus delays a little
        assert!(
            audio.abs_diff(320) <= 2,
            "{carrier} {codec}: {audio} samples"
        );
        assert!(got.contains(&Got::Dtmf('7')), "{carrier} {codec}");
        assert_eq!(stopped, carrier != Carrier::Vonage);
        assert_eq!(got.contains(&Got::Stop), stopped, "{carrier} {codec}");
    }
}

#[test]
fn opening_in_two_steps_is_connect() {
    for carrier in Carrier::ALL {
        let t0 = Instant::now();
        let mut whole = FakeCarrier::with_defaults(carrier, t0);
        whole.connect();
        let mut split = FakeCarrier::with_defaults(carrier, t0);
        let wrote = split.write_connected();
        assert_eq!(split.out().len(), usize::from(wrote), "{carrier}");
        assert_eq!(wrote, !matches!(carrier, Carrier::Plivo | Carrier::Vonage));
        split.write_start();
        let texts =
            |f: &FakeCarrier| -> Vec<String> { f.out().iter().map(|m| format!("{m:?}")).collect() };
        assert_eq!(texts(&split), texts(&whole), "{carrier}");

        // a start with other parameters carries them
        let mut other = FakeCarrier::with_defaults(carrier, t0);
        other.info_mut().custom_parameters = params();
        other.write_start();
        let mut server = other.server_codec();
        let start = other
            .out()
            .iter()
            .find_map(|m| match server.parse(m).unwrap() {
                Inbound::Start(s) => Some(s),
                _ => None,
            })
            .expect("a start");
        assert_eq!(start.custom_parameters, params(), "{carrier}");
    }
}

#[test]
fn marks_are_echoed_once_their_audio_has_played() {
    for (carrier, codec) in every_stream() {
        let t0 = Instant::now();
        let (mut fake, mut session) = open(carrier, codec, t0);
        // a mark with nothing queued comes back at once
        session.write(&mark(1, 0));
        play(&mut session, &mut fake, t0);
        let echoes = carrier != Carrier::Vonage;
        assert_eq!(
            deliver(&mut fake, &mut session),
            if echoes {
                vec![Got::Mark("s1f0".into())]
            } else {
                vec![]
            },
            "{carrier}"
        );
        // 200 ms of audio, then the utterance's last mark (Exotel writes what it holds back)
        session.write(&ToCaller::Media(agent_audio(10)));
        session.write(&ToCaller::Mark(MarkId {
            speech: 1,
            frames: 10,
            last: true,
        }));
        play(&mut session, &mut fake, t0);
        assert!(fake.is_playing(), "{carrier}");
        let end = fake.poll_timeout().expect("playing");
        fake.handle_timeout(t0 + Duration::from_millis(100));
        assert!(deliver(&mut fake, &mut session).is_empty(), "{carrier}");
        fake.handle_timeout(t0 + Duration::from_millis(1000));
        assert!(!fake.is_playing(), "{carrier} {codec}");
        assert!(end <= t0 + Duration::from_millis(1000), "{carrier}");
        assert_eq!(
            deliver(&mut fake, &mut session),
            if echoes {
                vec![Got::Mark("s1end10".into())]
            } else {
                vec![]
            },
            "{carrier}"
        );
        // what played is the agent's audio, decoded (Exotel pads to its chunk size)
        let heard = fake.heard();
        assert!(heard.len() >= 1590, "{carrier} {codec}: {}", heard.len());
        let loud = heard.iter().filter(|s| s.abs() > 1000).count();
        assert!(loud > 1000, "{carrier} {codec}: {loud} loud samples");
    }
}

/// `frames` 20 ms frames of loud agent audio.
fn agent_audio(frames: usize) -> crate::engine::AgentAudio {
    crate::engine::AgentAudio::whole(vec![0x20; frames * 160].into())
}

#[test]
fn clear_follows_each_carrier() {
    for (carrier, codec) in every_stream() {
        let t0 = Instant::now();
        let (mut fake, mut session) = open(carrier, codec, t0);
        // a second of audio in one message, as `Pacing::Burst` sends it
        session.write(&ToCaller::Media(agent_audio(50)));
        session.write(&mark(2, 50));
        play(&mut session, &mut fake, t0);
        let t1 = t0 + Duration::from_millis(100);
        fake.handle_timeout(t1);
        session.write(&ToCaller::Clear);
        play(&mut session, &mut fake, t1);
        assert!(fake.is_idle(), "{carrier}");
        assert_eq!(fake.clears(), 1);
        let got = deliver(&mut fake, &mut session);
        match carrier {
            Carrier::Twilio | Carrier::SignalWire | Carrier::Telnyx | Carrier::Exotel => {
                assert_eq!(got, vec![Got::Mark("s2f50".into())], "{carrier}")
            }
            // Plivo's clearedAudio and Vonage's websocket:cleared make no engine input
            Carrier::Plivo | Carrier::Vonage => assert!(got.is_empty(), "{carrier}"),
        }
        // only what played before the clear was heard
        assert!(fake.heard().len() <= 1000, "{carrier} {codec}");
    }
}

#[test]
fn malformed_server_messages_are_errors() {
    let t0 = Instant::now();
    let bad: &[(Carrier, Msg<'_>)] = &[
        (Carrier::Twilio, Msg::Text("{")),
        (
            Carrier::Twilio,
            Msg::Text(r#"{"event":"clear","streamSid":"other"}"#),
        ),
        (Carrier::Twilio, Msg::Text(r#"{"event":"clear"}"#)),
        (
            Carrier::Twilio,
            Msg::Text(
                r#"{"event":"media","streamSid":"MZ00000000000000000000000000000001","media":{"payload":"@@"}}"#,
            ),
        ),
        (Carrier::Twilio, Msg::Binary(&[0; 160])),
        (Carrier::Telnyx, Msg::Text(r#"{"event":"mark","mark":{}}"#)),
        (Carrier::Telnyx, Msg::Text(r#"{"event":"playAudio"}"#)),
        (
            Carrier::Plivo,
            Msg::Text(
                r#"{"event":"media","streamId":"MZ00000000000000000000000000000001","media":{"payload":"AA=="}}"#,
            ),
        ),
        (
            Carrier::Plivo,
            Msg::Text(
                r#"{"event":"playAudio","streamId":"MZ00000000000000000000000000000001","media":{"contentType":"audio/x-l16","sampleRate":16000,"payload":"AAAA"}}"#,
            ),
        ),
        (Carrier::Vonage, Msg::Binary(&[0; 320])),
        (Carrier::Vonage, Msg::Text(r#"{"action":"notify"}"#)),
        (Carrier::Vonage, Msg::Text(r#"{"event":"mark"}"#)),
        (
            Carrier::Exotel,
            Msg::Text(
                r#"{"event":"media","stream_sid":"MZ00000000000000000000000000000001","media":{"payload":"AAAA"}}"#,
            ),
        ),
    ];
    for (carrier, msg) in bad {
        let mut fake = FakeCarrier::with_defaults(*carrier, t0);
        assert!(
            fake.handle_message(t0, *msg).is_err(),
            "{carrier} accepted {msg:?}"
        );
    }
    assert!(FakeCarrier::new(Carrier::Twilio, AudioCodec::Alaw, CallInfo::default(), t0).is_err());
}
