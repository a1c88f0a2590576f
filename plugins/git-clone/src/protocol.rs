//! The git protocol, client side: discovery, `ls-refs` and `fetch` in
//! protocol v2, with the v0/v1 exchange for servers that do not speak v2.
//!
//! Plain code over a [`Transport`] (smart HTTP over a small [`Http`] trait
//! here; SSH in `ssh.rs`), so it runs natively in unit tests and over the
//! host's capabilities in the component. Framing uses `gix-packetline`.

use gix_hash::ObjectId;
use gix_packetline::PacketLineRef;

/// What the protocol needs from HTTP: whole-body GET and POST.
pub trait Http {
    fn get(&mut self, url: &str, headers: &[(&str, &str)]) -> Result<(u16, Vec<u8>), String>;
    fn post(
        &mut self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), String>;
}

/// One conversation with a remote's upload-pack, whatever carries it.
pub trait Transport {
    /// The remote's URL, for messages.
    fn url(&self) -> &str;
    /// upload-pack's first words (v2 capabilities, or the v0 ref
    /// advertisement), having asked for protocol v2.
    fn advertise(&mut self) -> Result<Vec<u8>, String>;
    /// One request and its whole response. `last`: no request follows (a
    /// stateful transport ends its input and reads to the end).
    fn request(&mut self, body: &[u8], version: u8, last: bool) -> Result<Vec<u8>, String>;
}

/// Opens a [`Transport`] to a URL.
pub trait Connect {
    fn open<'a>(&'a mut self, url: &str) -> Result<Box<dyn Transport + 'a>, String>;
}

/// Any [`Http`] connects to http(s) URLs by smart HTTP.
impl<H: Http> Connect for H {
    fn open<'a>(&'a mut self, url: &str) -> Result<Box<dyn Transport + 'a>, String> {
        Ok(Box::new(SmartHttp {
            http: self,
            url: url.to_string(),
        }))
    }
}

/// Git's smart HTTP: `GET info/refs`, then a `POST git-upload-pack` per
/// request (stateless).
pub struct SmartHttp<'a> {
    pub http: &'a mut dyn Http,
    pub url: String,
}

impl Transport for SmartHttp<'_> {
    fn url(&self) -> &str {
        &self.url
    }

    fn advertise(&mut self) -> Result<Vec<u8>, String> {
        let url = self.url.as_str();
        let refs_url = format!("{}/info/refs?service=git-upload-pack", base(url));
        let (status, mut body) = self.http.get(&refs_url, &[("Git-Protocol", "version=2")])?;
        check_status(url, status, &body)?;
        // git's own words when the answer is not its protocol (a sign-in
        // page, a proxy's error page, a web UI at that address).
        let not_git = |what: String| {
            format!(
                "{}/info/refs not valid: is this a git repository? (the server sent {what})",
                base(url)
            )
        };
        if !body.is_empty() && !body.iter().take(4).all(u8::is_ascii_hexdigit) {
            let head = String::from_utf8_lossy(&body[..body.len().min(200)]).to_lowercase();
            let what = if head.trim_start().starts_with('<') {
                "an HTML page: a sign-in page or a proxy in the way?".to_string()
            } else {
                format!("{} bytes that are not git's protocol", body.len())
            };
            return Err(not_git(what));
        }
        let all = lines(&body).map_err(not_git)?;
        // Smart HTTP starts with `# service=git-upload-pack` and a flush.
        let mut skip = 0;
        if let Some(first) = all.first()
            && text(first).is_some_and(|t| t.starts_with("# service="))
        {
            skip = 1 + usize::from(matches!(all.get(1), Some(PacketLineRef::Flush)));
        } else if !body.is_empty()
            && !matches!(all.first(), Some(PacketLineRef::Data(d)) if d.starts_with(b"version 2"))
        {
            return Err(format!(
                "{url}: not a git smart-HTTP server (dumb HTTP is not supported)"
            ));
        }
        let consumed: usize = all[..skip].iter().map(encoded_len).sum();
        drop(all);
        body.drain(..consumed);
        Ok(body)
    }

    fn request(&mut self, body: &[u8], version: u8, _last: bool) -> Result<Vec<u8>, String> {
        let url = format!("{}/git-upload-pack", base(&self.url));
        let mut headers = vec![
            ("Content-Type", "application/x-git-upload-pack-request"),
            ("Accept", "application/x-git-upload-pack-result"),
        ];
        if version == 2 {
            headers.push(("Git-Protocol", "version=2"));
        }
        let (status, resp) = self.http.post(&url, &headers, body)?;
        check_status(&self.url, status, &resp)?;
        Ok(resp)
    }
}

/// Bytes a pkt-line takes on the wire.
fn encoded_len(l: &PacketLineRef<'_>) -> usize {
    match l {
        PacketLineRef::Data(d) => 4 + d.len(),
        _ => 4,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    pub name: String,
    pub oid: ObjectId,
    /// For annotated tags: the object the tag points to.
    pub peeled: Option<ObjectId>,
    pub symref_target: Option<String>,
}

/// A remote's advertisement.
#[derive(Debug, Clone)]
pub struct Remote {
    pub url: String,
    /// 2, or 0 for the v0/v1 exchange.
    pub version: u8,
    pub capabilities: Vec<String>,
    pub refs: Vec<Ref>,
}

impl Remote {
    fn has(&self, cap: &str) -> bool {
        self.capabilities
            .iter()
            .any(|c| c == cap || c.starts_with(&format!("{cap}=")))
    }

    /// The branch HEAD points to, if the server said.
    pub fn head_target(&self) -> Option<&str> {
        self.refs
            .iter()
            .find(|r| r.name == "HEAD")
            .and_then(|r| r.symref_target.as_deref())
    }
}

/// What a fetch returned.
#[derive(Debug, Default)]
pub struct Fetched {
    pub pack: Vec<u8>,
    /// Commits the server made shallow boundaries (for `.git/shallow`).
    pub shallow: Vec<ObjectId>,
}

fn pkt(out: &mut Vec<u8>, line: &str) {
    gix_packetline::blocking_io::encode::data_to_write(line.as_bytes(), &mut *out)
        .expect("writing to a Vec");
}

fn flush(out: &mut Vec<u8>) {
    gix_packetline::blocking_io::encode::flush_to_write(&mut *out).expect("writing to a Vec");
}

fn delim(out: &mut Vec<u8>) {
    gix_packetline::blocking_io::encode::delim_to_write(&mut *out).expect("writing to a Vec");
}

/// Split a response body into packet lines.
pub fn lines(mut data: &[u8]) -> Result<Vec<PacketLineRef<'_>>, String> {
    let mut out = Vec::new();
    while !data.is_empty() {
        match gix_packetline::decode::streaming(data)
            .map_err(|e| format!("malformed response from the server: {e}"))?
        {
            gix_packetline::decode::Stream::Complete {
                line,
                bytes_consumed,
            } => {
                out.push(line);
                data = &data[bytes_consumed..];
            }
            gix_packetline::decode::Stream::Incomplete { .. } => {
                return Err("the server's response ended in the middle of a packet".into());
            }
        }
    }
    Ok(out)
}

fn text(line: &PacketLineRef<'_>) -> Option<String> {
    line.as_slice().map(|d| {
        String::from_utf8_lossy(d)
            .trim_end_matches('\n')
            .to_string()
    })
}

fn oid(hex: &str) -> Result<ObjectId, String> {
    ObjectId::from_hex(hex.as_bytes())
        .map_err(|_| format!("the server sent an invalid object id `{hex}`"))
}

fn check_status(url: &str, status: u16, body: &[u8]) -> Result<(), String> {
    match status {
        200 => Ok(()),
        401 | 403 => Err(format!(
            "{url}: authentication required (HTTP {status}); bind a secret to this authority in the task's grants.http"
        )),
        404 => Err(format!("{url}: no repository there (HTTP 404)")),
        s => Err(format!(
            "{url}: HTTP {s}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)]).trim()
        )),
    }
}

fn base(url: &str) -> &str {
    url.trim_end_matches('/')
}

/// The remote's advertisement, asking for protocol v2.
pub fn discover(t: &mut dyn Transport) -> Result<Remote, String> {
    discover_with(t, &[])
}

/// [`discover`], also listing refs under `prefixes` (a refspec's sources,
/// e.g. `refs/pull/`; v2 lists only what is asked for).
pub fn discover_with(t: &mut dyn Transport, prefixes: &[String]) -> Result<Remote, String> {
    let body = t.advertise()?;
    let url = t.url().to_string();
    let all =
        lines(&body).map_err(|e| format!("{url}: the advertisement is not git's protocol: {e}"))?;
    let rest: Vec<&PacketLineRef<'_>> = all.iter().collect();
    if rest.first().and_then(|l| text(l)).as_deref() == Some("version 2") {
        let capabilities = rest[1..]
            .iter()
            .take_while(|l| !matches!(l, PacketLineRef::Flush))
            .filter_map(|l| text(l))
            .collect();
        let mut remote = Remote {
            url: url.to_string(),
            version: 2,
            capabilities,
            refs: vec![],
        };
        remote.refs = ls_refs(t, &remote, prefixes)?;
        return Ok(remote);
    }
    // v0/v1: `<oid> <name>\0<caps>` then `<oid> <name>`, then flush.
    let mut remote = Remote {
        url: url.to_string(),
        version: 0,
        capabilities: vec![],
        refs: vec![],
    };
    for (i, l) in rest.iter().enumerate() {
        let Some(line) = text(l) else { break };
        let line = if i == 0 && line.starts_with("version 1") {
            continue;
        } else {
            line
        };
        let (refpart, caps) = match line.split_once('\0') {
            Some((r, c)) => (r.to_string(), Some(c.to_string())),
            None => (line.clone(), None),
        };
        if let Some(caps) = caps {
            remote.capabilities = caps.split(' ').map(str::to_string).collect();
        }
        let (hex, name) = refpart
            .split_once(' ')
            .ok_or_else(|| format!("{url}: malformed ref advertisement `{refpart}`"))?;
        if name == "capabilities^{}" {
            continue; // an empty repository
        }
        let id = oid(hex)?;
        if let Some(tag) = name.strip_suffix("^{}") {
            if let Some(r) = remote.refs.iter_mut().find(|r| r.name == tag) {
                r.peeled = Some(id);
            }
            continue;
        }
        remote.refs.push(Ref {
            name: name.to_string(),
            oid: id,
            peeled: None,
            symref_target: None,
        });
    }
    let symrefs: Vec<(String, String)> = remote
        .capabilities
        .iter()
        .filter_map(|c| c.strip_prefix("symref="))
        .filter_map(|s| s.split_once(':'))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    for (from, to) in symrefs {
        if let Some(r) = remote.refs.iter_mut().find(|r| r.name == from) {
            r.symref_target = Some(to);
        }
    }
    Ok(remote)
}

fn command_header(out: &mut Vec<u8>, remote: &Remote, command: &str) {
    pkt(out, &format!("command={command}\n"));
    pkt(out, "agent=capstan-git-clone/0.1\n");
    if remote.has("object-format") {
        pkt(out, "object-format=sha1\n");
    }
    delim(out);
}

/// v2 `ls-refs` for HEAD, branches and tags (peeled, with symrefs).
fn ls_refs(
    t: &mut dyn Transport,
    remote: &Remote,
    prefixes: &[String],
) -> Result<Vec<Ref>, String> {
    let mut body = Vec::new();
    command_header(&mut body, remote, "ls-refs");
    for l in [
        "peel\n",
        "symrefs\n",
        "ref-prefix HEAD\n",
        "ref-prefix refs/heads/\n",
        "ref-prefix refs/tags/\n",
    ] {
        pkt(&mut body, l);
    }
    for p in prefixes {
        pkt(&mut body, &format!("ref-prefix {p}\n"));
    }
    flush(&mut body);
    let resp = t.request(&body, 2, false)?;
    let mut refs = Vec::new();
    for l in lines(&resp)? {
        let Some(line) = text(&l) else { break };
        let mut parts = line.split(' ');
        let (Some(hex), Some(name)) = (parts.next(), parts.next()) else {
            return Err(format!("{}: malformed ls-refs line `{line}`", remote.url));
        };
        if hex == "unborn" {
            continue;
        }
        let mut r = Ref {
            name: name.to_string(),
            oid: oid(hex)?,
            peeled: None,
            symref_target: None,
        };
        for attr in parts {
            if let Some(t) = attr.strip_prefix("symref-target:") {
                r.symref_target = Some(t.to_string());
            } else if let Some(p) = attr.strip_prefix("peeled:") {
                r.peeled = Some(oid(p)?);
            }
        }
        refs.push(r);
    }
    Ok(refs)
}

/// What an existing checkout already holds, for an incremental fetch.
#[derive(Debug, Default, Clone)]
pub struct Have {
    /// Commits the client has (with everything they reach, down to its
    /// shallow boundary).
    pub commits: Vec<ObjectId>,
    /// The client's shallow boundary (`.git/shallow`).
    pub shallow: Vec<ObjectId>,
}

/// Fetch a pack with `wants` (depth 0 = full history); the server leaves
/// out what `have` already holds. One round: `have` lines, then `done`.
pub fn fetch(
    t: &mut dyn Transport,
    remote: &Remote,
    wants: &[ObjectId],
    depth: u32,
    have: &Have,
) -> Result<Fetched, String> {
    if remote.version == 2 {
        let mut body = Vec::new();
        command_header(&mut body, remote, "fetch");
        pkt(&mut body, "no-progress\n");
        pkt(&mut body, "ofs-delta\n");
        if depth > 0 {
            pkt(&mut body, &format!("deepen {depth}\n"));
            // The annotated tags on the fetched commits (git clone --depth).
            pkt(&mut body, "include-tag\n");
        }
        for w in wants {
            pkt(&mut body, &format!("want {w}\n"));
        }
        for s in &have.shallow {
            pkt(&mut body, &format!("shallow {s}\n"));
        }
        for h in &have.commits {
            pkt(&mut body, &format!("have {h}\n"));
        }
        pkt(&mut body, "done\n");
        flush(&mut body);
        let resp = t.request(&body, 2, true)?;
        return parse_v2_fetch(&remote.url, &resp);
    }
    // v0: capabilities on the first want.
    let mut caps = Vec::new();
    for c in ["side-band-64k", "ofs-delta", "no-progress", "include-tag"] {
        if remote.has(c) && (c != "include-tag" || depth > 0) {
            caps.push(c);
        }
    }
    if depth > 0 && !remote.has("shallow") {
        return Err(format!(
            "{}: the server does not support shallow clones; use depth 0",
            remote.url
        ));
    }
    let mut body = Vec::new();
    for (i, w) in wants.iter().enumerate() {
        if i == 0 {
            pkt(
                &mut body,
                &format!("want {w} {} agent=capstan-git-clone/0.1\n", caps.join(" ")),
            );
        } else {
            pkt(&mut body, &format!("want {w}\n"));
        }
    }
    for s in &have.shallow {
        pkt(&mut body, &format!("shallow {s}\n"));
    }
    if depth > 0 {
        pkt(&mut body, &format!("deepen {depth}\n"));
    }
    flush(&mut body);
    for h in &have.commits {
        pkt(&mut body, &format!("have {h}\n"));
    }
    pkt(&mut body, "done\n");
    let resp = t.request(&body, 0, true)?;
    parse_v0_fetch(
        &remote.url,
        &resp,
        caps.contains(&"side-band-64k"),
        depth > 0,
    )
}

fn sideband(url: &str, line: &PacketLineRef<'_>, pack: &mut Vec<u8>) -> Result<(), String> {
    let Some(data) = line.as_slice() else {
        return Ok(());
    };
    match data.first() {
        Some(1) => pack.extend_from_slice(&data[1..]),
        Some(2) => {}
        Some(3) => {
            return Err(format!(
                "{url}: the server reported: {}",
                String::from_utf8_lossy(&data[1..]).trim()
            ));
        }
        _ => return Err(format!("{url}: malformed side-band packet")),
    }
    Ok(())
}

fn parse_v2_fetch(url: &str, resp: &[u8]) -> Result<Fetched, String> {
    let mut out = Fetched::default();
    let mut section = String::new();
    for l in lines(resp)? {
        match l {
            PacketLineRef::Delimiter => section.clear(),
            PacketLineRef::Flush | PacketLineRef::ResponseEnd => {
                if section == "packfile" {
                    break;
                }
            }
            PacketLineRef::Data(d) => {
                if section == "packfile" {
                    sideband(url, &l, &mut out.pack)?;
                    continue;
                }
                let t = String::from_utf8_lossy(d).trim_end().to_string();
                if section.is_empty() {
                    if let Some(e) = t.strip_prefix("ERR ") {
                        return Err(format!("{url}: the server reported: {e}"));
                    }
                    section = t;
                    continue;
                }
                if section == "shallow-info"
                    && let Some(hex) = t.strip_prefix("shallow ")
                {
                    out.shallow.push(oid(hex)?);
                }
            }
        }
    }
    if out.pack.is_empty() {
        return Err(format!("{url}: the server sent no pack"));
    }
    Ok(out)
}

fn parse_v0_fetch(
    url: &str,
    resp: &[u8],
    sideband64: bool,
    shallow: bool,
) -> Result<Fetched, String> {
    let mut out = Fetched::default();
    let mut rest = resp;
    // shallow/unshallow lines, then a flush.
    if shallow {
        loop {
            let line = match gix_packetline::decode::streaming(rest) {
                Ok(gix_packetline::decode::Stream::Complete {
                    line,
                    bytes_consumed,
                }) => {
                    rest = &rest[bytes_consumed..];
                    line
                }
                _ => return Err(format!("{url}: malformed shallow section")),
            };
            match text(&line) {
                None => break,
                Some(t) => {
                    if let Some(hex) = t.strip_prefix("shallow ") {
                        out.shallow.push(oid(hex)?);
                    } else if let Some(e) = t.strip_prefix("ERR ") {
                        return Err(format!("{url}: the server reported: {e}"));
                    }
                }
            }
        }
    }
    // NAK (or ACK) line.
    match gix_packetline::decode::streaming(rest) {
        Ok(gix_packetline::decode::Stream::Complete {
            line,
            bytes_consumed,
        }) => {
            let t = text(&line).unwrap_or_default();
            if let Some(e) = t.strip_prefix("ERR ") {
                return Err(format!("{url}: the server reported: {e}"));
            }
            rest = &rest[bytes_consumed..];
        }
        _ => return Err(format!("{url}: malformed fetch response")),
    }
    if sideband64 {
        for l in lines(rest)? {
            if matches!(l, PacketLineRef::Flush) {
                break;
            }
            sideband(url, &l, &mut out.pack)?;
        }
    } else {
        out.pack = rest.to_vec();
    }
    if out.pack.is_empty() {
        return Err(format!("{url}: the server sent no pack"));
    }
    Ok(out)
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
