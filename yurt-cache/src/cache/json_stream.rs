//! Incremental splitters for the two streamed JSON shapes the cache tee decodes, fed chunk by
//! chunk as the bytes arrive (a chunk boundary may fall anywhere, inside a string or an escape):
//!
//! - [`ObjectStream`]: a sequence of top-level JSON objects separated by optional whitespace
//!   (a watch body: one `{"type":..,"object":..}` event per line, or pretty-printed);
//! - [`ListStream`]: one list object `{"kind":..,"apiVersion":..,"metadata":{..},"items":[..]}`,
//!   yielding each element of `items` as soon as its closing brace arrives, and the small
//!   top-level members (`kind`, `apiVersion`, `metadata`) at the end.
//!
//! Both only track structure (string and escape state, a stack of open brackets) and hand out
//! raw byte ranges; the caller parses each piece with serde_json, which validates it. Neither
//! ever holds more than the piece being assembled, and a piece larger than the limit given to
//! `new` is an error, so hostile input cannot grow memory without bound. Any structural error
//! (a closer that does not match, bytes after the end, a top-level value that is not an object)
//! is reported once and the splitter stays failed. They are lenient where serde_json catches
//! the problem later or it cannot matter: commas between `items` elements and the bytes of
//! scalar values are not checked. Top-level keys are matched after unescaping (`"it\u0065ms"`
//! is `items`). The `json_stream` fuzz target checks that chunking never changes the output
//! and that whatever serde_json accepts splits into exactly serde's values.

use bytes::{Bytes, BytesMut};

/// Why a stream could not be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// The bytes are not the expected JSON shape.
    #[error("malformed JSON stream: {0}")]
    Malformed(&'static str),
    /// One piece exceeded the size limit.
    #[error("a JSON value exceeds {0} bytes")]
    TooLarge(usize),
    /// The stream ended in the middle of a value.
    #[error("the JSON stream ended early")]
    Truncated,
}

/// Structural state shared by both splitters: inside a string, after a backslash, and the stack
/// of open `{` / `[`.
#[derive(Debug, Default)]
struct Lexer {
    in_string: bool,
    escape: bool,
    stack: Vec<u8>,
}

/// What one byte did to the structure.
#[derive(Debug, PartialEq, Eq)]
enum Tok {
    /// A byte inside a string, or a scalar byte (digit, letter) outside one.
    Other,
    /// A `"` that opened a string.
    StringOpen,
    /// A `"` that closed a string.
    StringClose,
    /// `{` or `[`; the stack now holds it (depth is the new stack length).
    Open,
    /// `}` or `]` that matched; the stack no longer holds it.
    Close,
    /// `,` outside strings.
    Comma,
    /// `:` outside strings.
    Colon,
    /// JSON whitespace outside strings.
    Space,
}

/// Deepest nesting accepted (serde_json's own default recursion limit is 128).
const MAX_DEPTH: usize = 512;

impl Lexer {
    fn step(&mut self, b: u8) -> Result<Tok, SplitError> {
        if self.in_string {
            if self.escape {
                self.escape = false;
            } else if b == b'\\' {
                self.escape = true;
            } else if b == b'"' {
                self.in_string = false;
                return Ok(Tok::StringClose);
            }
            return Ok(Tok::Other);
        }
        Ok(match b {
            b'"' => {
                self.in_string = true;
                Tok::StringOpen
            }
            b'{' | b'[' => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(SplitError::Malformed("nesting too deep"));
                }
                self.stack.push(b);
                Tok::Open
            }
            b'}' | b']' => {
                let want = if b == b'}' { b'{' } else { b'[' };
                if self.stack.pop() != Some(want) {
                    return Err(SplitError::Malformed("unbalanced bracket"));
                }
                Tok::Close
            }
            b',' => Tok::Comma,
            b':' => Tok::Colon,
            b' ' | b'\t' | b'\n' | b'\r' => Tok::Space,
            _ => Tok::Other,
        })
    }

    fn depth(&self) -> usize {
        self.stack.len()
    }
}

/// A piece being assembled across chunks: bytes carried over from earlier chunks plus the start
/// of the piece in the current chunk.
#[derive(Debug)]
struct Capture {
    buf: BytesMut,
    limit: usize,
}

impl Capture {
    fn new(limit: usize) -> Self {
        Capture {
            buf: BytesMut::new(),
            limit,
        }
    }

    fn extend(&mut self, bytes: &[u8]) -> Result<(), SplitError> {
        if self.buf.len() + bytes.len() > self.limit {
            return Err(SplitError::TooLarge(self.limit));
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    fn take(&mut self) -> Bytes {
        self.buf.split().freeze()
    }

    /// The piece that ends at `chunk[..=end]` and started at `start` in this chunk (or in an
    /// earlier one when `start` is `None`). When the whole piece lies in `owner` (the chunk as
    /// [`Bytes`]) it is a zero-copy slice of it; otherwise the carried bytes are joined.
    fn finish(
        &mut self,
        chunk: &[u8],
        owner: Option<&Bytes>,
        start: Option<usize>,
        end: usize,
    ) -> Result<Bytes, SplitError> {
        if let (Some(owner), Some(s), true) = (owner, start, self.buf.is_empty()) {
            if end + 1 - s > self.limit {
                return Err(SplitError::TooLarge(self.limit));
            }
            return Ok(owner.slice(s..=end));
        }
        self.extend(&chunk[start.unwrap_or(0)..=end])?;
        Ok(self.take())
    }
}

/// Bytes that matter outside strings inside an item: quotes and brackets.
fn is_structural(b: u8) -> bool {
    matches!(b, b'"' | b'{' | b'}' | b'[' | b']')
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// A word with the high bit set in (at least) the lowest byte of `word` equal to `b`; no bit
/// is set below it, so `trailing_zeros / 8` is the offset of the first match.
fn bytes_equal(word: u64, b: u8) -> u64 {
    let v = word ^ (ONES * u64::from(b));
    v.wrapping_sub(ONES) & !v & HIGHS
}

/// Offset of the first byte of `bytes` for which `want` holds, testing eight bytes at a time
/// with `word` (which must flag at least the first such byte of a word, and none before it).
fn find(bytes: &[u8], word: impl Fn(u64) -> u64, want: impl Fn(u8) -> bool) -> Option<usize> {
    let mut words = bytes.chunks_exact(8);
    for (n, w) in words.by_ref().enumerate() {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        let hit = word(u64::from_le_bytes(a));
        if hit != 0 {
            return Some(n * 8 + (hit.trailing_zeros() / 8) as usize);
        }
    }
    let tail = bytes.len() - words.remainder().len();
    words
        .remainder()
        .iter()
        .position(|&b| want(b))
        .map(|p| tail + p)
}

/// First `"` or `\` (the bytes that end or escape inside a string).
fn find_string_stop(bytes: &[u8]) -> Option<usize> {
    find(
        bytes,
        |w| bytes_equal(w, b'"') | bytes_equal(w, b'\\'),
        |b| b == b'"' || b == b'\\',
    )
}

/// First quote or bracket. `[` and `]` are `{` and `}` without bit 5, so setting it in every
/// byte finds all four brackets with two compares (no other byte maps onto them).
fn find_structural(bytes: &[u8]) -> Option<usize> {
    find(
        bytes,
        |w| {
            let folded = w | (ONES * 0x20);
            bytes_equal(w, b'"') | bytes_equal(folded, b'{') | bytes_equal(folded, b'}')
        },
        is_structural,
    )
}

impl Lexer {
    /// Runs the lexer over `bytes` until the bracket that brings the depth back to `depth`
    /// closes; returns its offset, or `None` when `bytes` ended first (the state carries over).
    /// Equivalent to [`Lexer::step`] on every byte, but jumps over string contents and scalars.
    fn skip_to_depth(&mut self, bytes: &[u8], depth: usize) -> Result<Option<usize>, SplitError> {
        let mut i = 0;
        while i < bytes.len() {
            if self.in_string {
                if self.escape {
                    self.escape = false;
                    i += 1;
                    continue;
                }
                match find_string_stop(&bytes[i..]) {
                    None => return Ok(None),
                    Some(p) => {
                        i += p;
                        if bytes[i] == b'\\' {
                            self.escape = true;
                        } else {
                            self.in_string = false;
                        }
                        i += 1;
                    }
                }
            } else {
                match find_structural(&bytes[i..]) {
                    None => return Ok(None),
                    Some(p) => {
                        i += p;
                        if self.step(bytes[i])? == Tok::Close && self.depth() == depth {
                            return Ok(Some(i));
                        }
                        i += 1;
                    }
                }
            }
        }
        Ok(None)
    }
}

/// Splits a stream of top-level JSON objects (a watch body); see the [module docs](self).
#[derive(Debug)]
pub struct ObjectStream {
    lex: Lexer,
    cap: Capture,
    failed: Option<SplitError>,
}

impl ObjectStream {
    /// A splitter refusing objects larger than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        ObjectStream {
            lex: Lexer::default(),
            cap: Capture::new(limit),
            failed: None,
        }
    }

    /// Feeds the next chunk; returns the objects it completed, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, SplitError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.feed_inner(chunk);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn feed_inner(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, SplitError> {
        let mut out = Vec::new();
        // Start of the current object in this chunk (when one is open).
        let mut start = (self.lex.depth() > 0).then_some(0);
        for (i, &b) in chunk.iter().enumerate() {
            let depth_before = self.lex.depth();
            let tok = self.lex.step(b)?;
            if depth_before == 0 {
                match tok {
                    Tok::Space => continue,
                    Tok::Open if b == b'{' => start = Some(i),
                    _ => return Err(SplitError::Malformed("expected a JSON object")),
                }
            } else if tok == Tok::Close && self.lex.depth() == 0 {
                let s = start.take().unwrap_or(0);
                self.cap.extend(&chunk[s..=i])?;
                out.push(self.cap.take());
            }
        }
        if let Some(s) = start {
            self.cap.extend(&chunk[s..])?;
        }
        Ok(out)
    }

    /// Ends the stream: an error if it stopped inside an object.
    pub fn finish(&self) -> Result<(), SplitError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.lex.depth() > 0 || self.lex.in_string {
            return Err(SplitError::Truncated);
        }
        Ok(())
    }
}

/// The top-level members of a list besides its items, as raw JSON (absent ones empty).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListHead {
    /// The raw `kind` value (a JSON string with quotes).
    pub kind: Bytes,
    /// The raw `apiVersion` value.
    pub api_version: Bytes,
    /// The raw `metadata` value.
    pub metadata: Bytes,
}

/// Where the list splitter is inside the top-level object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListPos {
    /// Before the top-level `{`.
    Start,
    /// Inside the top-level object, expecting a key (or `}`).
    Key,
    /// After a `,` of the top-level object, expecting a key.
    NextKey,
    /// Inside a key string.
    InKey,
    /// After a key, before its `:`.
    Colon,
    /// After `:`, before the value starts.
    Value,
    /// Inside a member value other than `items`.
    InValue,
    /// Inside the `items` array (depth 2), between elements.
    Items,
    /// Inside one item (depth 3 and more).
    InItem,
    /// After a member value, expecting `,` or `}`.
    AfterValue,
    /// After the top-level `}`.
    Done,
}

/// Which member is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    Kind,
    ApiVersion,
    Metadata,
    Items,
    Other,
}

/// Splits one list object into its items as they arrive; see the [module docs](self).
#[derive(Debug)]
pub struct ListStream {
    lex: Lexer,
    pos: ListPos,
    key: Vec<u8>,
    key_escaped: bool,
    member: Member,
    cap: Capture,
    head: ListHead,
    failed: Option<SplitError>,
}

/// Longest key remembered (longer keys are none of the ones we read).
const MAX_KEY: usize = 32;

impl ListStream {
    /// A splitter refusing items (and head members) larger than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        ListStream {
            lex: Lexer::default(),
            pos: ListPos::Start,
            key: Vec::new(),
            key_escaped: false,
            member: Member::Other,
            cap: Capture::new(limit),
            head: ListHead::default(),
            failed: None,
        }
    }

    /// Feeds the next chunk; returns the items it completed, in order (copies of the bytes).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, SplitError> {
        self.feed_checked(chunk, None)
    }

    /// [`ListStream::feed`] for a chunk held as [`Bytes`]: an item that lies wholly inside
    /// `chunk` is returned as a slice of it, without copying.
    pub fn feed_bytes(&mut self, chunk: &Bytes) -> Result<Vec<Bytes>, SplitError> {
        self.feed_checked(chunk, Some(chunk))
    }

    fn feed_checked(
        &mut self,
        chunk: &[u8],
        owner: Option<&Bytes>,
    ) -> Result<Vec<Bytes>, SplitError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.feed_inner(chunk, owner);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn capturing(&self) -> bool {
        self.pos == ListPos::InItem
            || (self.pos == ListPos::InValue && self.member != Member::Other)
    }

    fn feed_inner(
        &mut self,
        chunk: &[u8],
        owner: Option<&Bytes>,
    ) -> Result<Vec<Bytes>, SplitError> {
        let mut out = Vec::new();
        // Start of the piece being captured in this chunk (0 when it began in an earlier one).
        let mut start = self.capturing().then_some(0);
        let mut i = 0;
        while i < chunk.len() {
            if self.pos == ListPos::InItem {
                // Inside an item only its closing brace matters: jump to it.
                match self.lex.skip_to_depth(&chunk[i..], 2)? {
                    None => break,
                    Some(p) => {
                        i += p;
                        out.push(self.cap.finish(chunk, owner, start.take(), i)?);
                        self.pos = ListPos::Items;
                        i += 1;
                        continue;
                    }
                }
            }
            let b = chunk[i];
            let tok = self.lex.step(b)?;
            let depth = self.lex.depth();
            match self.pos {
                ListPos::Start => match tok {
                    Tok::Space => {}
                    Tok::Open if b == b'{' => self.pos = ListPos::Key,
                    _ => return Err(SplitError::Malformed("expected a JSON object")),
                },
                ListPos::Key | ListPos::NextKey => match tok {
                    Tok::Space => {}
                    Tok::StringOpen => {
                        self.key.clear();
                        self.key_escaped = false;
                        self.pos = ListPos::InKey;
                    }
                    Tok::Close if depth == 0 && self.pos == ListPos::Key => {
                        self.pos = ListPos::Done
                    }
                    _ => return Err(SplitError::Malformed("expected a key")),
                },
                ListPos::InKey => match tok {
                    Tok::StringClose => {
                        self.member = member(&self.key, self.key_escaped);
                        self.pos = ListPos::Colon;
                    }
                    _ => {
                        if b == b'\\' {
                            self.key_escaped = true;
                        }
                        if self.key.len() <= MAX_KEY {
                            self.key.push(b);
                        }
                    }
                },
                ListPos::Colon => match tok {
                    Tok::Space => {}
                    Tok::Colon => self.pos = ListPos::Value,
                    _ => return Err(SplitError::Malformed("expected ':'")),
                },
                ListPos::Value if tok == Tok::Space => {}
                ListPos::Value => {
                    if matches!(tok, Tok::Close | Tok::Comma | Tok::Colon) {
                        return Err(SplitError::Malformed("expected a value"));
                    }
                    if self.member == Member::Items {
                        match tok {
                            Tok::Open if b == b'[' => self.pos = ListPos::Items,
                            // `"items": null` is an empty list.
                            Tok::Other if b == b'n' => {
                                self.member = Member::Other;
                                self.pos = ListPos::InValue;
                            }
                            _ => return Err(SplitError::Malformed("items is not an array")),
                        }
                    } else {
                        self.pos = ListPos::InValue;
                        if self.member != Member::Other {
                            start = Some(i);
                        }
                    }
                }
                ListPos::InValue => {
                    let ends =
                        (tok == Tok::Comma && depth == 1) || (tok == Tok::Close && depth == 0);
                    if ends {
                        // The value ended just before this delimiter.
                        if let Some(s) = start.take() {
                            self.cap.extend(&chunk[s..i])?;
                        }
                        let raw = trim_end(self.cap.take());
                        match self.member {
                            Member::Kind => self.head.kind = raw,
                            Member::ApiVersion => self.head.api_version = raw,
                            Member::Metadata => self.head.metadata = raw,
                            Member::Items | Member::Other => {}
                        }
                        self.pos = if tok == Tok::Close {
                            ListPos::Done
                        } else {
                            ListPos::NextKey
                        };
                    }
                }
                ListPos::Items => match tok {
                    Tok::Space | Tok::Comma => {}
                    Tok::Open if b == b'{' => {
                        self.pos = ListPos::InItem;
                        start = Some(i);
                    }
                    Tok::Close if depth == 1 => self.pos = ListPos::AfterValue,
                    _ => return Err(SplitError::Malformed("an item is not an object")),
                },
                ListPos::InItem => {
                    // Handled by the jump above; kept for completeness.
                    if tok == Tok::Close && depth == 2 {
                        out.push(self.cap.finish(chunk, owner, start.take(), i)?);
                        self.pos = ListPos::Items;
                    }
                }
                ListPos::AfterValue => match tok {
                    Tok::Space => {}
                    Tok::Comma => self.pos = ListPos::NextKey,
                    Tok::Close if depth == 0 => self.pos = ListPos::Done,
                    _ => return Err(SplitError::Malformed("expected ',' or '}'")),
                },
                ListPos::Done => {
                    if tok != Tok::Space {
                        return Err(SplitError::Malformed("bytes after the list"));
                    }
                }
            }
            i += 1;
        }
        if let Some(s) = start
            && self.capturing()
        {
            self.cap.extend(&chunk[s..])?;
        }
        Ok(out)
    }

    /// Ends the stream and returns the list's head; an error unless the list was complete.
    pub fn finish(self) -> Result<ListHead, SplitError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.pos != ListPos::Done {
            return Err(SplitError::Truncated);
        }
        Ok(self.head)
    }
}

/// Which member a top-level key names; `raw` is the key as sent (escapes undecoded, cut after
/// [`MAX_KEY`] bytes).
fn member(raw: &[u8], escaped: bool) -> Member {
    if raw.len() > MAX_KEY {
        return Member::Other;
    }
    let decoded;
    let key: &[u8] = if escaped {
        let mut quoted = Vec::with_capacity(raw.len() + 2);
        quoted.push(b'"');
        quoted.extend_from_slice(raw);
        quoted.push(b'"');
        match serde_json::from_slice::<String>(&quoted) {
            Ok(k) => {
                decoded = k;
                decoded.as_bytes()
            }
            // An invalid escape: serde_json refuses the whole document anyway.
            Err(_) => return Member::Other,
        }
    } else {
        raw
    };
    match key {
        b"kind" => Member::Kind,
        b"apiVersion" => Member::ApiVersion,
        b"metadata" => Member::Metadata,
        b"items" => Member::Items,
        _ => Member::Other,
    }
}

/// The raw value without trailing whitespace (it was cut at the following delimiter).
fn trim_end(b: Bytes) -> Bytes {
    let end = b
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        .map_or(0, |p| p + 1);
    b.slice(..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"7","continue":""},"items":[{"metadata":{"name":"a","annotations":{"x":"}\"{["}}},{"metadata":{"name":"b"},"spec":{"a":[1,{"b":"]"}]}}]}"#;

    fn split_list(body: &[u8], chunk: usize) -> Result<(Vec<Bytes>, ListHead), SplitError> {
        let mut s = ListStream::new(1 << 20);
        let mut items = Vec::new();
        for c in body.chunks(chunk.max(1)) {
            items.extend(s.feed(c)?);
        }
        Ok((items, s.finish()?))
    }

    #[test]
    fn list_items_and_head_at_every_chunk_size() {
        for chunk in 1..=LIST.len() {
            let (items, head) = split_list(LIST.as_bytes(), chunk).unwrap();
            assert_eq!(items.len(), 2, "chunk {chunk}");
            let a: serde_json::Value = serde_json::from_slice(&items[0]).unwrap();
            assert_eq!(a["metadata"]["annotations"]["x"], "}\"{[");
            let b: serde_json::Value = serde_json::from_slice(&items[1]).unwrap();
            assert_eq!(b["spec"]["a"][1]["b"], "]");
            assert_eq!(&head.kind[..], br#""PodList""#);
            assert_eq!(&head.api_version[..], br#""v1""#);
            let meta: serde_json::Value = serde_json::from_slice(&head.metadata).unwrap();
            assert_eq!(meta["resourceVersion"], "7");
        }
    }

    #[test]
    fn feed_bytes_splits_alike_and_slices_whole_items() {
        for chunk in 1..=LIST.len() {
            let body = Bytes::from_static(LIST.as_bytes());
            let mut copy = ListStream::new(1 << 20);
            let mut slice = ListStream::new(1 << 20);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for at in (0..body.len()).step_by(chunk) {
                let c = body.slice(at..(at + chunk).min(body.len()));
                a.extend(copy.feed(&c).unwrap());
                b.extend(slice.feed_bytes(&c).unwrap());
            }
            assert_eq!(a, b, "chunk {chunk}");
            assert_eq!(copy.finish().unwrap(), slice.finish().unwrap());
        }
        let body = Bytes::from_static(LIST.as_bytes());
        let items = ListStream::new(1 << 20).feed_bytes(&body).unwrap();
        let range = body.as_ptr_range();
        assert!(
            items.iter().all(|i| range.contains(&i.as_ptr())),
            "zero-copy"
        );
        let mut small = ListStream::new(8);
        assert_eq!(
            small
                .feed_bytes(&Bytes::from_static(br#"{"items":[{"a":"0123456789"}]}"#))
                .unwrap_err(),
            SplitError::TooLarge(8)
        );
    }

    #[test]
    fn list_with_whitespace_members_in_any_order_and_null_items() {
        let body = br#" { "items" : [ { "a" : 1 } , {"b":2} ] , "other": {"x":[1,2]}, "n": 12 , "metadata" : { "resourceVersion" : "9" } , "kind":"L" } "#;
        let (items, head) = split_list(body, 3).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(&head.kind[..], br#""L""#);
        assert_eq!(&head.metadata[..], br#"{ "resourceVersion" : "9" }"#);
        let (items, head) = split_list(br#"{"metadata":{},"items":null}"#, 5).unwrap();
        assert!(items.is_empty());
        assert_eq!(&head.metadata[..], b"{}");
        let (items, _) = split_list(br#"{"items":[]}"#, 1).unwrap();
        assert!(items.is_empty());
    }

    #[test]
    fn escaped_keys_are_decoded() {
        let body = br#"{"\u006bind":"K","it\u0065ms":[{"a":1}],"a\"b":{"c":[]}}"#;
        let (items, head) = split_list(body, 2).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(&head.kind[..], br#""K""#);
    }

    #[test]
    fn list_errors() {
        for bad in [
            &br#"[1]"#[..],
            br#"{"items":[1]}"#,
            br#"{"items":{}}"#,
            br#"{"items":[{]}"#,
            br#"{"a":1}x"#,
            br#"{"a":1,}"#,
        ] {
            assert!(
                split_list(bad, 2).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            split_list(&LIST.as_bytes()[..LIST.len() - 1], 4).unwrap_err(),
            SplitError::Truncated
        );
        let mut s = ListStream::new(8);
        assert_eq!(
            s.feed(br#"{"items":[{"a":"0123456789"}]}"#).unwrap_err(),
            SplitError::TooLarge(8)
        );
        assert!(s.feed(b"]}").is_err(), "stays failed");
    }

    #[test]
    fn object_stream_splits_lines_and_pretty_printed_objects() {
        let body = b"{\"type\":\"ADDED\",\"object\":{\"s\":\"}\\\"\\n\"}}\n{\n  \"type\": \"DELETED\"\n}\n   {\"a\":[]}";
        for chunk in 1..=body.len() {
            let mut s = ObjectStream::new(1 << 20);
            let mut out = Vec::new();
            for c in body.chunks(chunk) {
                out.extend(s.feed(c).unwrap());
            }
            s.finish().unwrap();
            assert_eq!(out.len(), 3, "chunk {chunk}");
            let first: serde_json::Value = serde_json::from_slice(&out[0]).unwrap();
            assert_eq!(first["object"]["s"], "}\"\n");
            let second: serde_json::Value = serde_json::from_slice(&out[1]).unwrap();
            assert_eq!(second["type"], "DELETED");
        }
    }

    #[test]
    fn object_stream_errors() {
        assert!(ObjectStream::new(100).feed(b"[1]").is_err());
        assert!(ObjectStream::new(100).feed(b"{}}").is_err());
        let mut s = ObjectStream::new(100);
        s.feed(b"{\"a\":").unwrap();
        assert_eq!(s.finish().unwrap_err(), SplitError::Truncated);
        let mut s = ObjectStream::new(4);
        assert_eq!(s.feed(b"{\"abc\":1}").unwrap_err(), SplitError::TooLarge(4));
    }

    #[test]
    fn word_scans_find_the_first_stop() {
        let mut rng = Rng(7);
        const ALPHABET: &[u8] = b"a\"\\{}[]z\x7b\x80\xff \x5c\x22";
        for _ in 0..2000 {
            let bytes: Vec<u8> = (0..rng.below(40))
                .map(|_| {
                    if rng.below(4) == 0 {
                        ALPHABET[rng.below(ALPHABET.len() as u64) as usize]
                    } else {
                        rng.below(256) as u8
                    }
                })
                .collect();
            assert_eq!(
                find_string_stop(&bytes),
                bytes.iter().position(|&b| b == b'"' || b == b'\\')
            );
            assert_eq!(
                find_structural(&bytes),
                bytes.iter().position(|&b| is_structural(b))
            );
        }
    }

    /// SplitMix64, so the generated cases are reproducible.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn value(rng: &mut Rng, depth: u32) -> serde_json::Value {
        const STRS: [&str; 6] = ["", "a", "}]{[", "\"\\", "\n\t,:", "ünï"];
        match if depth > 3 {
            rng.below(4)
        } else {
            rng.below(6)
        } {
            0 => serde_json::Value::Null,
            1 => serde_json::json!(rng.below(1000)),
            2 => serde_json::json!(STRS[rng.below(6) as usize]),
            3 => serde_json::json!(rng.below(2) == 0),
            4 => (0..rng.below(4)).map(|_| value(rng, depth + 1)).collect(),
            _ => object(rng, depth + 1),
        }
    }

    fn object(rng: &mut Rng, depth: u32) -> serde_json::Value {
        const KEYS: [&str; 6] = ["items", "metadata", "kind", "k", "\"", "}"];
        let mut m = serde_json::Map::new();
        for _ in 0..rng.below(4) {
            m.insert(KEYS[rng.below(6) as usize].into(), value(rng, depth));
        }
        serde_json::Value::Object(m)
    }

    #[test]
    fn generated_lists_and_streams_split_as_serde_parses_them() {
        let mut rng = Rng(0x5eed);
        for case in 0..500 {
            let items: Vec<serde_json::Value> =
                (0..rng.below(5)).map(|_| object(&mut rng, 0)).collect();
            let list = serde_json::json!({
                "kind": "XList",
                "metadata": object(&mut rng, 2),
                "other": value(&mut rng, 0),
                "items": items,
            });
            let text = if rng.below(2) == 0 {
                serde_json::to_vec(&list).unwrap()
            } else {
                serde_json::to_vec_pretty(&list).unwrap()
            };
            let chunk = 1 + rng.below(40) as usize;
            let (split, head) = split_list(&text, chunk).unwrap();
            let mut by_bytes = ListStream::new(1 << 20);
            let body = Bytes::from(text.clone());
            let mut sliced = Vec::new();
            for at in (0..body.len()).step_by(chunk) {
                sliced.extend(
                    by_bytes
                        .feed_bytes(&body.slice(at..(at + chunk).min(body.len())))
                        .unwrap(),
                );
            }
            assert_eq!(sliced, split, "case {case}");
            assert_eq!(by_bytes.finish().unwrap(), head, "case {case}");
            let split: Vec<serde_json::Value> = split
                .iter()
                .map(|i| serde_json::from_slice(i).unwrap())
                .collect();
            assert_eq!(split, items, "case {case}");
            assert_eq!(&head.kind[..], br#""XList""#);
            let meta: serde_json::Value = serde_json::from_slice(&head.metadata).unwrap();
            assert_eq!(meta, list["metadata"], "case {case}");

            // The same items as a watch-like stream of objects.
            let mut stream = Vec::new();
            for item in &items {
                stream.extend(serde_json::to_vec(item).unwrap());
                stream.extend(if rng.below(2) == 0 { &b"\n"[..] } else { b" " });
            }
            let mut s = ObjectStream::new(1 << 20);
            let mut out = Vec::new();
            for c in stream.chunks(chunk) {
                out.extend(s.feed(c).unwrap());
            }
            s.finish().unwrap();
            let out: Vec<serde_json::Value> = out
                .iter()
                .map(|i| serde_json::from_slice(i).unwrap())
                .collect();
            assert_eq!(out, items, "case {case}");
        }
    }
}
