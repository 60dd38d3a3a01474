//! EDIFACT syntax: bytes to tree and back, with no I/O and no clock.
//!
//! What it does: reads interchanges (UNA, UNB/UNZ, optional UNG/UNE, UNH/UNT) in any of the
//! syntax identifiers UNOA to UNOY, versions 1 to 4, checks the control values, and writes them
//! back byte for byte ([`write_document`]); writes new interchanges canonically ([`Writer`]).
//!
//! What it does not do: know message structures or code lists (that is `grammar`), or check
//! dates and IDs beyond the envelope's mandatory elements.
//!
//! ```
//! use mako_gateway::edifact::{parse, write_document};
//! let bytes = b"UNA:+.? '\nUNB+UNOC:3+9900000000003:500+9900000000010:500+251001:0815+R1'\nUNH+1+CONTRL:D:3:UN:2.0b'\nUCI+X1+9900000000010:500+9900000000003:500+7'\nUNT+3+1'\nUNZ+1+R1'\n";
//! let doc = parse(bytes)?;
//! assert_eq!(write_document(&doc), bytes);
//! # Ok::<(), mako_gateway::edifact::SyntaxError>(())
//! ```

mod charset;
mod delimiters;
mod envelope;
mod error;
mod parse;
mod scan;
pub mod tokens;
mod tree;
mod write;

pub use charset::{Charset, Unrepresentable};
pub use delimiters::{parse_una, Delimiters, ServiceStringAdvice, UnaProblem, UNA_LEN};
pub use envelope::{
    parse_preparation_date_time, preparation_date_time, PartnerQualifier, Party, ReferenceSequence,
    MAX_REFERENCE_LEN,
};
pub use error::{Position, SegmentTag, SyntaxError, SyntaxErrorKind};
pub use parse::{parse, parse_lenient, ParseOutcome};
pub use tree::{
    join_components, version_of, write_joined, Document, Element, Group, Interchange, Message,
    PartyRef, Segment, SyntaxIdentifier, Value, Version,
};
pub use write::{
    write_document, InterchangeHeader, IntoOwnedError, LineBreak, MessageIdentifier,
    OutboundMessage, OwnedInterchange, OwnedSegment, WriteError, Writer,
};
