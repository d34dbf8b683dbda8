//! Small helpers every part of mxgate uses, with no knowledge of any of them: the clock, random
//! identifiers and tokens, how a secret is hashed before it is stored, and files only their owner
//! may read. Nothing here knows the store, OAuth or a session.

mod clock;
mod hashing;
mod private_files;
mod random;

pub use clock::{now, now_ms};
pub use hashing::{digest_of_hash, hex, token_digest, token_hash, DigestKeyed, TokenDigest};
pub use private_files::{
    create_private_dir, create_private_file, open_private_append, restrict_permissions, write_private_atomically,
};
pub use random::{new_opaque_token, random_bytes, random_id};
