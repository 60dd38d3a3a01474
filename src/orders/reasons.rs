//! Reason codes as readable text, German original and English, for the API.
//!
//! Sources: EBD E_0595 (ORDRSP 19133), E_0250 and E_0283 (ORDRSP 19005/19006) of FV2504 to
//! FV2610 (Hochfrequenz/machine-readable_entscheidungsbaumdiagramme); APERAK ERC codes from
//! APERAK AHB 1.1 §4.3.

/// The German and English meaning of `code` in the decision tree `tree` (`E_0595`, `E_0250`,
/// `E_0283`, or `APERAK` for ERC codes).
pub fn reason_text(tree: &str, code: &str) -> (&'static str, &'static str) {
    match (tree, code) {
        ("E_0595", "A20") => (
            "Zustimmung: Änderung der Daten, neue Stammdaten folgen",
            "accepted: data change, new master data follow",
        ),
        ("E_0595", "A21") => (
            "Ablehnung: Vorlauffrist von 2 Werktagen vor dem Änderungstermin nicht eingehalten",
            "rejected: lead time of 2 working days before the change date not met",
        ),
        ("E_0595", "A22") => (
            "Ablehnung: Vorlauffrist von 7 Werktagen nicht eingehalten",
            "rejected: lead time of 7 working days not met",
        ),
        ("E_0595", "A99") => (
            "Ablehnung: Sonstiges (siehe Freitext)",
            "rejected: other reason (see free text)",
        ),
        ("E_0595", _) => ("Ablehnung: keine Änderung", "rejected: no change"),
        ("E_0250", "A01") => (
            "Ablehnung: Frist nicht eingehalten (weniger als 20 Werktage)",
            "rejected: deadline not met (fewer than 20 working days)",
        ),
        ("E_0250", "A02") => (
            "Zustimmung: Änderung kann durchgeführt werden",
            "accepted: the change can be made",
        ),
        ("E_0250", "A03") => (
            "Ablehnung: Vollmacht des Letztverbrauchers fehlt",
            "rejected: the customer's authorisation is missing",
        ),
        ("E_0250", "A04") => (
            "Ablehnung: Vollmacht nicht plausibel oder ungültig",
            "rejected: the customer's authorisation is not plausible or invalid",
        ),
        ("E_0283", "A01") => (
            "Ablehnung: bestellte Technik liegt bereits vor",
            "rejected: the ordered technology is already installed",
        ),
        ("E_0283", "A02") => (
            "Ablehnung: MSB ist zum Beginn des Umsetzungszeitraums nicht mehr zugeordnet",
            "rejected: the metering operator is no longer assigned at the start of the period",
        ),
        ("E_0283", "A03") => (
            "Ablehnung: gewünschte Technik an der Lokation nicht möglich",
            "rejected: the technology is not possible at the location",
        ),
        ("E_0283", "A04") => (
            "Ablehnung: Realisierung im gewünschten Zeitraum nicht möglich",
            "rejected: not possible in the wanted period (alternative window offered)",
        ),
        ("E_0283", "A05") => (
            "Ablehnung: Preisblatt in der angegebenen Version nicht akzeptiert",
            "rejected: price sheet version not accepted",
        ),
        ("E_0283", "A06") => (
            "Zustimmung: Bestellbestätigung",
            "accepted: order confirmed",
        ),
        ("E_0283", "A99") => (
            "Ablehnung: Sonstiges (siehe Freitext)",
            "rejected: other reason (see free text)",
        ),
        ("APERAK", "Z10") => ("ID unbekannt", "ID unknown"),
        ("APERAK", "Z14") => (
            "Objekt im IT-System nicht gefunden",
            "object not found in the IT system",
        ),
        ("APERAK", "Z17") => (
            "Absender zum Zeitpunkt dem Objekt nicht zugeordnet",
            "sender not assigned to the object at that time",
        ),
        ("APERAK", "Z29") => (
            "Erforderliche Angabe für diesen Anwendungsfall fehlt",
            "information required for this use case is missing",
        ),
        ("APERAK", "Z33") => (
            "Referenziertes Geschäftsvorfall-Tupel nicht vorhanden",
            "referenced business transaction unknown",
        ),
        ("APERAK", "Z35") => ("Format nicht eingehalten", "format not met"),
        ("APERAK", "Z39") => (
            "Code nicht aus erlaubtem Wertebereich",
            "code not in the allowed range",
        ),
        ("APERAK", "Z43") => (
            "Geschäftsvorfall für Objekt mit der Eigenschaft nicht erlaubt",
            "business transaction not allowed for an object with this property",
        ),
        ("APERAK", code) if code.chars().all(|c| c.is_ascii_digit()) => {
            ("Syntaxfehler (CONTRL)", "syntax error (CONTRL)")
        }
        ("APERAK", _) => (
            "Verarbeitbarkeitsfehler (APERAK)",
            "message could not be processed (APERAK)",
        ),
        _ => ("unbekannter Code", "unknown code"),
    }
}
