//! Memory ids: UUIDv7 text, strictly increasing in commit order within one store.
//!
//! `Uuid::now_v7` is monotonic only within one process; two processes writing in the same
//! millisecond, or a clock stepped backwards, could otherwise produce an id that sorts before
//! an existing one. The id is therefore chosen inside the write transaction: the clock's id
//! if it sorts after the newest stored id, else the newest stored id plus one. Listing by id
//! is then listing in commit order, and an `after` cursor never skips a memory.

use uuid::Uuid;

/// Bits of a UUIDv7 (RFC 9562): 48 timestamp, 4 version, 12 rand_a, 2 variant, 62 rand_b.
const RAND_B_MAX: u128 = (1 << 62) - 1;
const RAND_A_SHIFT: u32 = 64;
const RAND_A_MAX: u128 = 0xfff;
const TIMESTAMP_SHIFT: u32 = 80;

/// The id for a new memory, given the newest id stored (if any).
pub fn next_id(newest: Option<&str>) -> String {
    let fresh = Uuid::now_v7();
    let Some(newest) = newest.and_then(|text| Uuid::parse_str(text).ok()) else {
        return text(fresh);
    };
    if fresh > newest {
        return text(fresh);
    }
    text(successor(newest))
}

/// The smallest valid UUIDv7 greater than `id`: the counter fields count up, carrying into
/// the timestamp, and the version and variant bits stay as they are.
fn successor(id: Uuid) -> Uuid {
    let bits = id.as_u128();
    let rand_b = bits & RAND_B_MAX;
    if rand_b < RAND_B_MAX {
        return Uuid::from_u128(bits + 1);
    }
    let rand_a = (bits >> RAND_A_SHIFT) & RAND_A_MAX;
    let cleared = bits & !RAND_B_MAX;
    if rand_a < RAND_A_MAX {
        return Uuid::from_u128(cleared + (1 << RAND_A_SHIFT));
    }
    let cleared = cleared & !(RAND_A_MAX << RAND_A_SHIFT);
    Uuid::from_u128(cleared.wrapping_add(1 << TIMESTAMP_SHIFT))
}

fn text(id: Uuid) -> String {
    id.hyphenated().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_are_version_7_and_increase() {
        let a = next_id(None);
        let b = next_id(Some(&a));
        assert!(b > a, "{b} should sort after {a}");
        assert_eq!(Uuid::parse_str(&b).unwrap().get_version_num(), 7);
    }

    #[test]
    fn an_id_from_the_future_is_followed_by_its_successor() {
        let future = "ffffffff-ffff-7000-8000-000000000000";
        let next = next_id(Some(future));
        assert_eq!(next, "ffffffff-ffff-7000-8000-000000000001");
    }

    #[test]
    fn successor_carries_into_rand_a_then_the_timestamp() {
        let id = Uuid::parse_str("01890000-0000-7000-bfff-ffffffffffff").unwrap();
        assert_eq!(
            successor(id).to_string(),
            "01890000-0000-7001-8000-000000000000"
        );
        let id = Uuid::parse_str("01890000-0000-7fff-bfff-ffffffffffff").unwrap();
        let next = successor(id);
        assert_eq!(next.to_string(), "01890000-0001-7000-8000-000000000000");
        assert_eq!(next.get_version_num(), 7);
        assert!(next > id);
    }
}
