-- Suppression ignores case across the whole address: "Bob@X.org" is "bob@x.org". From this
-- version address_sha256 (and delivery_events.recipient_sha256, which erasure matches by) is the
-- SHA-256 of the address with its local part lower-cased too (core::case_folded); before, only the
-- domain was. The address column keeps the spelling it was listed under.
--
-- Rows are re-keyed here where SQL computes exactly what the daemon would: plain ASCII dot-atom
-- addresses, whose key is simply the whole address with A-Z folded (translate, so no collation or
-- locale can fold anything else, such as a Turkish dotless i). The rest keep the hash they had:
--   * rows whose address was erased (NULL) cannot be re-keyed: nothing is left to hash;
--   * rows whose address needs the daemon's parser (quoted local parts, UTF-8, U-label domains).
-- Neither is lost: the daemon looks an address up under its new key and, where that differs,
-- under the key of the old normalisation too (store::legacy_suppression_hash), so an erased
-- address stays suppressed under the spelling it was erased with, exactly as before. Their one
-- loss is the new case-insensitivity, which the old rows never had.
--
-- Rows that now share a key merge into one: the earliest (created_at) is kept, with its reason
-- and source; if any of them was erased, the survivor is erased as well.

CREATE TEMP TABLE suppression_rekey ON COMMIT DROP AS
SELECT ctid AS row_id, account, created_at, address IS NULL AS erased,
       CASE WHEN address ~ '^[A-Za-z0-9!#$%&''*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+$'
            THEN sha256(convert_to(translate(address, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz'), 'UTF8'))
            ELSE address_sha256 END AS new_key
FROM suppressions;

CREATE TEMP TABLE suppression_merge ON COMMIT DROP AS
SELECT account, new_key, bool_or(erased) AS erased, (array_agg(row_id ORDER BY created_at, row_id))[1] AS keep
FROM suppression_rekey
GROUP BY account, new_key;

DELETE FROM suppressions s
USING suppression_rekey k JOIN suppression_merge m ON m.account = k.account AND m.new_key = k.new_key
WHERE s.ctid = k.row_id AND k.row_id <> m.keep;

UPDATE suppressions s
SET address_sha256 = m.new_key, address = CASE WHEN m.erased THEN NULL ELSE s.address END
FROM suppression_merge m
WHERE s.ctid = m.keep AND (s.address_sha256 <> m.new_key OR (m.erased AND s.address IS NOT NULL));

UPDATE delivery_events
SET recipient_sha256 = sha256(convert_to(translate(recipient, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz'), 'UTF8'))
WHERE recipient ~ '^[A-Za-z0-9!#$%&''*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+$';
