//! The CMS calls that the safe `openssl` crate (0.10) does not wrap, behind two safe functions.
//!
//! Why this module exists: `openssl::cms::CmsContentInfo::{sign, encrypt}` call `CMS_sign` and
//! `CMS_encrypt` with OpenSSL's defaults, which are PKCS#1 v1.5 for RSA signatures and key
//! transport and `dhSinglePass-stdDH-sha1kdf` for ECDH. The BDEW rules want RSASSA-PSS,
//! RSAES-OAEP and the SHA-256 KDF. OpenSSL sets those on the signer's or recipient's key
//! context, which is reached only through `CMS_add1_signer` / `CMS_add1_recipient_cert` with
//! `CMS_KEY_PARAM`, `CMS_SignerInfo_get0_pkey_ctx` / `CMS_RecipientInfo_get0_pkey_ctx` and
//! `CMS_final` — none of them in the safe crate or in `openssl-sys`. This is exactly the
//! sequence `openssl cms -sign/-encrypt -keyopt …` runs (apps/cms.c), so the bytes come from
//! the same OpenSSL code the CLI peer in our tests uses.
//!
//! The alternatives were weighed in `super`'s module docs; in short, building the CMS
//! structures ourselves (RustCrypto `cms` + openssl primitives) would replace ~60 lines of
//! audited FFI by several hundred lines of hand-made ASN.1 for KARI, the ECC-CMS-SharedInfo
//! KDF input, OAEP/PSS parameters and AuthEnvelopedData — more code where a mistake is silent.
//!
//! Audit notes (what to check when touching this file):
//! - The `extern` declarations match `include/openssl/cms.h` and `evp.h` of OpenSSL 3.0
//!   (also 1.1.1, where the same functions exist with the same signatures).
//! - Every pointer passed in comes from a value borrowed for the whole call; `add1` functions
//!   take their own reference on the certificate and key, so nothing borrowed outlives the call.
//! - `get0` pointers are owned by the `CMS_ContentInfo`, which we own (`CmsContentInfo`, freed
//!   by its `Drop`), and are used only while it lives.
//! - The memory BIO reads from the borrowed `content` slice and is freed before we return.
//! - Parameter names and values are `&CStr`, so NUL-terminated.
//!
//! And one call that the safe crate does wrap, but cannot be trusted with hostile input:
//! `SMIME_read_CMS` puts parts of the MIME headers it reads into OpenSSL's error queue (for a
//! signature part of another type: `type: <its Content-Type>`), and the safe crate's
//! `openssl::error::Error::get` (0.10.82, `error.rs` line 133) unwraps that text as UTF-8: a
//! header with other bytes panicked the mail reader (found by the `smime_read` fuzz target).
//! [`smime_read`] reads the queue itself ([`drain_errors`], text decoded lossily).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::ptr;

use foreign_types::{ForeignType, ForeignTypeRef};
use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKeyRef, Private};
use openssl::stack::Stack;
use openssl::symm::Cipher;
use openssl::x509::{X509Ref, X509};
use openssl_sys::{CMS_ContentInfo, BIO, EVP_MD, EVP_PKEY, EVP_PKEY_CTX, X509 as RawX509};

/// `CMS_SignerInfo` and `CMS_RecipientInfo` are opaque to us; we only pass them back.
type SignerInfo = c_void;
type RecipientInfo = c_void;

extern "C" {
    fn CMS_add1_signer(
        cms: *mut CMS_ContentInfo,
        signer: *mut RawX509,
        pk: *mut EVP_PKEY,
        md: *const EVP_MD,
        flags: c_uint,
    ) -> *mut SignerInfo;
    fn CMS_SignerInfo_get0_pkey_ctx(si: *mut SignerInfo) -> *mut EVP_PKEY_CTX;
    fn CMS_add1_recipient_cert(
        cms: *mut CMS_ContentInfo,
        recip: *mut RawX509,
        flags: c_uint,
    ) -> *mut RecipientInfo;
    fn CMS_RecipientInfo_get0_pkey_ctx(ri: *mut RecipientInfo) -> *mut EVP_PKEY_CTX;
    fn CMS_final(
        cms: *mut CMS_ContentInfo,
        data: *mut BIO,
        dcont: *mut BIO,
        flags: c_uint,
    ) -> c_int;
    fn EVP_PKEY_CTX_ctrl_str(
        ctx: *mut EVP_PKEY_CTX,
        type_: *const c_char,
        value: *const c_char,
    ) -> c_int;
}

/// Empties OpenSSL's error queue of this thread and describes what was in it (reason and the
/// attached text, decoded lossily: the text can be hostile bytes from the input).
pub(super) fn drain_errors() -> String {
    let mut out: Vec<String> = Vec::new();
    loop {
        let mut file: *const c_char = ptr::null();
        let mut line: c_int = 0;
        let mut data: *const c_char = ptr::null();
        let mut flags: c_int = 0;
        // SAFETY: out-pointers to locals; the strings returned belong to the queue's slot and
        // are copied before the next call can reuse it.
        let code = unsafe {
            openssl_sys::ERR_get_error_line_data(&mut file, &mut line, &mut data, &mut flags)
        };
        if code == 0 {
            break;
        }
        // SAFETY: a static string of OpenSSL's, or null.
        let reason = unsafe { openssl_sys::ERR_reason_error_string(code) };
        let mut text = if reason.is_null() {
            format!("error {code:#x}")
        } else {
            // SAFETY: NUL-terminated, static.
            unsafe { CStr::from_ptr(reason) }
                .to_string_lossy()
                .into_owned()
        };
        if flags & openssl_sys::ERR_TXT_STRING != 0 && !data.is_null() {
            // SAFETY: NUL-terminated while the slot is not reused (until the next call).
            let detail = unsafe { CStr::from_ptr(data) }.to_string_lossy();
            if !detail.is_empty() {
                text.push_str(&format!(" ({detail})"));
            }
        }
        out.push(text);
    }
    if out.is_empty() {
        "OpenSSL gave no reason".to_string()
    } else {
        out.join("; ")
    }
}

/// `SMIME_read_CMS` of an S/MIME entity (`application/pkcs7-mime` or `multipart/signed`;
/// detached content is not taken out), its errors read by [`drain_errors`]. The queue is
/// emptied before and after, so that no text of this input reaches a later call of the safe
/// crate.
pub(super) fn smime_read(entity: &[u8]) -> Result<CmsContentInfo, String> {
    let len = c_int::try_from(entity.len()).map_err(|_| "the entity is too large".to_string())?;
    openssl::init();
    // SAFETY: the memory BIO reads from `entity`, borrowed for the whole call, and is freed
    // before we return; the CMS_ContentInfo returned is owned by the `CmsContentInfo`.
    unsafe {
        openssl_sys::ERR_clear_error();
        let bio = openssl_sys::BIO_new_mem_buf(entity.as_ptr() as *const c_void, len);
        if bio.is_null() {
            return Err(drain_errors());
        }
        let cms = openssl_sys::SMIME_read_CMS(bio, ptr::null_mut());
        openssl_sys::BIO_free_all(bio);
        if cms.is_null() {
            return Err(drain_errors());
        }
        openssl_sys::ERR_clear_error();
        Ok(CmsContentInfo::from_ptr(cms))
    }
}

/// A key-context option as `openssl cms -keyopt name:value` takes it.
pub(super) type KeyOpt = (&'static CStr, &'static CStr);

/// What went wrong in a CMS call.
#[derive(Debug)]
pub(super) enum CmsCallError {
    /// The content does not fit OpenSSL's `int` length.
    TooLarge,
    /// OpenSSL refused; its error queue.
    OpenSsl(ErrorStack),
}

impl From<ErrorStack> for CmsCallError {
    fn from(e: ErrorStack) -> Self {
        CmsCallError::OpenSsl(e)
    }
}

/// Signed-data over `content` by one signer, with `opts` set on the signer's key context
/// (`CMS_sign` with `CMS_PARTIAL`, `CMS_add1_signer` with `CMS_KEY_PARAM`, then `CMS_final`).
pub(super) fn sign(
    content: &[u8],
    cert: &X509Ref,
    key: &PKeyRef<Private>,
    md: MessageDigest,
    opts: &[KeyOpt],
    flags: CMSOptions,
) -> Result<CmsContentInfo, CmsCallError> {
    let cms = CmsContentInfo::sign::<Private>(None, None, None, None, flags | CMSOptions::PARTIAL)?;
    // SAFETY: see the audit notes above; `cms`, `cert`, `key` and `md` are live for the call,
    // and `CMS_add1_signer` takes its own references on `cert` and `key`.
    unsafe {
        let si = CMS_add1_signer(
            cms.as_ptr(),
            cert.as_ptr(),
            key.as_ptr(),
            md.as_ptr(),
            (flags | CMSOptions::KEY_PARAM).bits(),
        );
        if si.is_null() {
            return Err(ErrorStack::get().into());
        }
        set_opts(CMS_SignerInfo_get0_pkey_ctx(si), opts)?;
    }
    finish(&cms, content, flags)?;
    Ok(cms)
}

/// Enveloped data (AuthEnvelopedData for an AEAD `cipher`) of `content` for one recipient, with
/// `opts` set on the recipient's key context (`CMS_encrypt` with `CMS_PARTIAL`,
/// `CMS_add1_recipient_cert` with `CMS_KEY_PARAM`, then `CMS_final`).
pub(super) fn encrypt(
    content: &[u8],
    recipient: &X509Ref,
    cipher: Cipher,
    opts: &[KeyOpt],
    flags: CMSOptions,
) -> Result<CmsContentInfo, CmsCallError> {
    let no_recipients = Stack::<X509>::new()?;
    let cms = CmsContentInfo::encrypt(&no_recipients, &[], cipher, flags | CMSOptions::PARTIAL)?;
    // SAFETY: see the audit notes above; `CMS_add1_recipient_cert` takes its own reference on
    // the certificate, and the key context it returns belongs to `cms`.
    unsafe {
        let ri = CMS_add1_recipient_cert(
            cms.as_ptr(),
            recipient.as_ptr(),
            (flags | CMSOptions::KEY_PARAM).bits(),
        );
        if ri.is_null() {
            return Err(ErrorStack::get().into());
        }
        set_opts(CMS_RecipientInfo_get0_pkey_ctx(ri), opts)?;
    }
    finish(&cms, content, flags)?;
    Ok(cms)
}

/// Sets `opts` on a key context owned by a live `CMS_ContentInfo`.
///
/// # Safety
/// `pctx` must be null or a key context owned by a `CMS_ContentInfo` that outlives the call.
unsafe fn set_opts(pctx: *mut EVP_PKEY_CTX, opts: &[KeyOpt]) -> Result<(), ErrorStack> {
    if opts.is_empty() {
        return Ok(());
    }
    if pctx.is_null() {
        return Err(ErrorStack::get());
    }
    for (name, value) in opts {
        if EVP_PKEY_CTX_ctrl_str(pctx, name.as_ptr(), value.as_ptr()) <= 0 {
            return Err(ErrorStack::get());
        }
    }
    Ok(())
}

/// `CMS_final` over `content` (signs or encrypts what the partial structure describes).
fn finish(cms: &CmsContentInfo, content: &[u8], flags: CMSOptions) -> Result<(), CmsCallError> {
    let len = c_int::try_from(content.len()).map_err(|_| CmsCallError::TooLarge)?;
    // SAFETY: the read-only memory BIO points into `content`, which is borrowed for the whole
    // call, and is freed before we return; `cms` is live.
    unsafe {
        let bio = openssl_sys::BIO_new_mem_buf(content.as_ptr().cast::<c_void>(), len);
        if bio.is_null() {
            return Err(ErrorStack::get().into());
        }
        let ok = CMS_final(cms.as_ptr(), bio, ptr::null_mut(), flags.bits());
        openssl_sys::BIO_free_all(bio);
        if ok <= 0 {
            return Err(ErrorStack::get().into());
        }
    }
    Ok(())
}
