//! Unit tests of `protocol.rs`: pkt-line framing, v0/v2 advertisements,
//! fetch responses, and what a web page or a broken server gets.
use super::*;

fn pl(lines: &[Option<&str>]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        match l {
            Some(t) => pkt(&mut out, t),
            None => flush(&mut out),
        }
    }
    out
}

struct Canned(Vec<(u16, Vec<u8>)>);
impl Http for Canned {
    fn get(&mut self, _: &str, _: &[(&str, &str)]) -> Result<(u16, Vec<u8>), String> {
        Ok(self.0.remove(0))
    }
    fn post(&mut self, _: &str, _: &[(&str, &str)], _: &[u8]) -> Result<(u16, Vec<u8>), String> {
        Ok(self.0.remove(0))
    }
}

/// [`discover`] over smart HTTP answered by `http`.
fn discover(http: &mut Canned, url: &str) -> Result<Remote, String> {
    super::discover(http.open(url)?.as_mut())
}

const A: &str = "1111111111111111111111111111111111111111";
const B: &str = "2222222222222222222222222222222222222222";

#[test]
fn a_web_page_is_not_a_git_repository() {
    let page = b"<!DOCTYPE html>\n<html><body>Sign in</body></html>".to_vec();
    let e = discover(
        &mut Canned(vec![(200, page)]),
        "https://git.example/app.git",
    )
    .unwrap_err();
    assert_eq!(
        e,
        "https://git.example/app.git/info/refs not valid: is this a git repository? \
         (the server sent an HTML page: a sign-in page or a proxy in the way?)"
    );
    let e = discover(&mut Canned(vec![(200, b"hello".to_vec())]), "http://x/r").unwrap_err();
    assert!(e.contains("5 bytes that are not git's protocol"), "{e}");
    // Framing that starts right and then breaks.
    let e = discover(&mut Canned(vec![(200, b"0010abc".to_vec())]), "http://x/r").unwrap_err();
    assert!(e.contains("is this a git repository?"), "{e}");
}

#[test]
fn v0_advertisement_with_symref_and_peeled_tags() {
    let adv = pl(&[
        Some("# service=git-upload-pack\n"),
        None,
        Some(&format!(
            "{A} HEAD\0multi_ack side-band-64k ofs-delta shallow symref=HEAD:refs/heads/main\n"
        )),
        Some(&format!("{A} refs/heads/main\n")),
        Some(&format!("{B} refs/tags/v1\n")),
        Some(&format!("{A} refs/tags/v1^{{}}\n")),
        None,
    ]);
    let mut http = Canned(vec![(200, adv)]);
    let r = discover(&mut http, "http://h/r.git").unwrap();
    assert_eq!(r.version, 0);
    assert_eq!(r.head_target(), Some("refs/heads/main"));
    let tag = r.refs.iter().find(|r| r.name == "refs/tags/v1").unwrap();
    assert_eq!(tag.peeled.unwrap().to_string(), A);
}

#[test]
fn v2_ls_refs_and_fetch_sections() {
    let caps = pl(&[
        Some("version 2\n"),
        Some("ls-refs=unborn\n"),
        Some("fetch=shallow\n"),
        None,
    ]);
    let refs = pl(&[
        Some(&format!("{A} HEAD symref-target:refs/heads/main\n")),
        Some(&format!("{A} refs/heads/main\n")),
        None,
    ]);
    let mut http = Canned(vec![(200, caps), (200, refs)]);
    let r = discover(&mut http, "http://h/r.git").unwrap();
    assert_eq!(r.version, 2);
    assert_eq!(r.refs.len(), 2);
    let mut resp = Vec::new();
    pkt(&mut resp, "shallow-info\n");
    pkt(&mut resp, &format!("shallow {A}\n"));
    delim(&mut resp);
    pkt(&mut resp, "packfile\n");
    let mut band = vec![1u8];
    band.extend_from_slice(b"PACKdata");
    gix_packetline::blocking_io::encode::data_to_write(&band, &mut resp).unwrap();
    gix_packetline::blocking_io::encode::data_to_write(b"\x02progress", &mut resp).unwrap();
    flush(&mut resp);
    let f = parse_v2_fetch("u", &resp).unwrap();
    assert_eq!(f.pack, b"PACKdata");
    assert_eq!(f.shallow.len(), 1);
    let mut err = Vec::new();
    pkt(&mut err, "packfile\n");
    gix_packetline::blocking_io::encode::data_to_write(b"\x03upload-pack: not our ref", &mut err)
        .unwrap();
    assert!(
        parse_v2_fetch("u", &err)
            .unwrap_err()
            .contains("not our ref")
    );
}

#[test]
fn http_errors_are_clear() {
    let mut http = Canned(vec![(401, vec![])]);
    let e = discover(&mut http, "http://h/r.git").unwrap_err();
    assert!(e.contains("authentication required"), "{e}");
    let mut http = Canned(vec![(404, vec![])]);
    assert!(
        discover(&mut http, "http://h/r.git")
            .unwrap_err()
            .contains("no repository")
    );
    let mut http = Canned(vec![(200, b"0012truncated".to_vec())]);
    assert!(discover(&mut http, "http://h/r.git").is_err());
}
