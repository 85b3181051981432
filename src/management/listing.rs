//! RabbitMQ's list parameters: `page`, `page_size`, `name` (substring, or a regular expression
//! with `use_regex=true`), `sort` (a field, dotted for nested ones), `sort_reverse` and
//! `columns`. Without `page` a list is a plain JSON array; with it, RabbitMQ's page object.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde_json::{json, Map, Value};

/// Most items a page may hold, as RabbitMQ's management plugin allows.
const MAX_PAGE_SIZE: usize = 500;

/// Why the parameters were refused (HTTP 400).
pub(super) struct BadRequest(pub(super) String);

/// Applies the list parameters in `query` to `items`.
pub(super) fn list(
    mut items: Vec<Value>,
    query: &HashMap<String, String>,
) -> Result<Value, BadRequest> {
    let total = items.len();
    filter_by_name(&mut items, query, |item| {
        item["name"].as_str().unwrap_or("")
    })?;
    let filtered = items.len();
    if let Some(field) = query.get("sort").filter(|f| !f.is_empty()) {
        items.sort_by(|a, b| compare(lookup(a, field), lookup(b, field)));
        if query.get("sort_reverse").is_some_and(|v| v == "true") {
            items.reverse();
        }
    }
    let items = match query.get("columns").filter(|c| !c.is_empty()) {
        Some(columns) => {
            let columns: Vec<&str> = columns.split(',').map(str::trim).collect();
            items
                .iter()
                .map(|item| select_columns(item, &columns))
                .collect()
        }
        None => items,
    };
    let Some((page, page_size)) = page_parameters(query, filtered)? else {
        return Ok(Value::Array(items));
    };
    let page_items: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * page_size)
        .take(page_size)
        .collect();
    Ok(page_object(page_items, page, page_size, filtered, total))
}

/// [`list`] for objects that cost to serialise (queues: a lock and the metrics each): the
/// name filter runs on the objects and, for a page sorted by name (or not sorted), only
/// the page's objects are serialised, so a page of 100 out of 10,000 queues builds 100.
/// Other requests serialise everything first and go through [`list`].
pub(super) fn list_lazily<T>(
    mut items: Vec<T>,
    query: &HashMap<String, String>,
    name: impl Fn(&T) -> &str,
    to_json: impl Fn(&T) -> Value,
) -> Result<Value, BadRequest> {
    let sort = query.get("sort").filter(|field| !field.is_empty());
    let by_name = sort.is_none_or(|field| field == "name");
    if query.get("page").is_none() || !by_name {
        return list(items.iter().map(to_json).collect(), query);
    }
    let total = items.len();
    filter_by_name(&mut items, query, &name)?;
    let filtered = items.len();
    if sort.is_some() {
        items.sort_by(|a, b| name(a).cmp(name(b)));
        if query.get("sort_reverse").is_some_and(|v| v == "true") {
            items.reverse();
        }
    }
    let Some((page, page_size)) = page_parameters(query, filtered)? else {
        return Ok(Value::Array(items.iter().map(to_json).collect()));
    };
    let columns: Option<Vec<&str>> = query
        .get("columns")
        .filter(|c| !c.is_empty())
        .map(|columns| columns.split(',').map(str::trim).collect());
    let page_items: Vec<Value> = items
        .iter()
        .skip((page - 1) * page_size)
        .take(page_size)
        .map(|item| {
            let value = to_json(item);
            match &columns {
                Some(columns) => select_columns(&value, columns),
                None => value,
            }
        })
        .collect();
    Ok(page_object(page_items, page, page_size, filtered, total))
}

/// Keeps the items whose name matches the `name` parameter (a substring, case-insensitive,
/// or a regular expression with `use_regex=true`).
fn filter_by_name<T>(
    items: &mut Vec<T>,
    query: &HashMap<String, String>,
    name: impl Fn(&T) -> &str,
) -> Result<(), BadRequest> {
    let Some(pattern) = query.get("name").filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    if query.get("use_regex").is_some_and(|v| v == "true") {
        let regex = regex::Regex::new(pattern)
            .map_err(|error| BadRequest(format!("invalid regular expression: {error}")))?;
        items.retain(|item| regex.is_match(name(item)));
    } else {
        let needle = pattern.to_lowercase();
        items.retain(|item| name(item).to_lowercase().contains(&needle));
    }
    Ok(())
}

/// RabbitMQ's page object.
fn page_object(
    items: Vec<Value>,
    page: usize,
    page_size: usize,
    filtered: usize,
    total: usize,
) -> Value {
    json!({
        "filtered_count": filtered,
        "item_count": items.len(),
        "items": items,
        "page": page,
        "page_count": filtered.div_ceil(page_size).max(1),
        "page_size": page_size,
        "total_count": total,
    })
}

/// `page` and `page_size`, checked against the `filtered` item count; None without `page`.
fn page_parameters(
    query: &HashMap<String, String>,
    filtered: usize,
) -> Result<Option<(usize, usize)>, BadRequest> {
    let Some(page) = query.get("page") else {
        return Ok(None);
    };
    let page: usize = page
        .parse()
        .ok()
        .filter(|p| *p >= 1)
        .ok_or_else(|| BadRequest(format!("page must be a positive integer, not {page}")))?;
    let page_size: usize = match query.get("page_size") {
        Some(size) => size
            .parse()
            .ok()
            .filter(|s| (1..=MAX_PAGE_SIZE).contains(s))
            .ok_or_else(|| {
                BadRequest(format!(
                    "page_size must be between 1 and {MAX_PAGE_SIZE}, not {size}"
                ))
            })?,
        None => 100,
    };
    let page_count = filtered.div_ceil(page_size).max(1);
    if page > page_count {
        return Err(BadRequest(format!(
            "page number out of range: {page} of {page_count}"
        )));
    }
    Ok(Some((page, page_size)))
}

/// A field, dotted for nested objects (`message_stats.publish`).
fn lookup<'a>(item: &'a Value, field: &str) -> &'a Value {
    field
        .split('.')
        .fold(item, |value, part| value.get(part).unwrap_or(&Value::Null))
}

/// Numbers by value, strings alphabetically, missing fields first.
fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

/// Only the `columns` of `item` (dotted names keep the nesting).
fn select_columns(item: &Value, columns: &[&str]) -> Value {
    let mut selected = Map::new();
    for column in columns {
        let value = lookup(item, column);
        if !value.is_null() {
            let parts: Vec<&str> = column.split('.').collect();
            insert_path(&mut selected, &parts, value.clone());
        }
    }
    Value::Object(selected)
}

/// Inserts `value` at the dotted path `parts`, making the objects on the way.
fn insert_path(map: &mut Map<String, Value>, parts: &[&str], value: Value) {
    match parts {
        [] => {}
        [last] => {
            map.insert((*last).to_string(), value);
        }
        [first, rest @ ..] => {
            let entry = map
                .entry((*first).to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items() -> Vec<Value> {
        (0..250)
            .map(|i| json!({ "name": format!("q{i:03}"), "messages": 250 - i, "vhost": "/" }))
            .collect()
    }

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pages_sort_filter_and_select() {
        let page = list(items(), &query(&[("page", "2"), ("page_size", "100")]))
            .ok()
            .unwrap();
        assert_eq!(page["page_count"], 3);
        assert_eq!(page["item_count"], 100);
        assert_eq!(page["total_count"], 250);
        assert_eq!(page["items"][0]["name"], "q100");
        let sorted = list(items(), &query(&[("sort", "messages")])).ok().unwrap();
        assert_eq!(sorted[0]["name"], "q249");
        let reversed = list(
            items(),
            &query(&[("sort", "name"), ("sort_reverse", "true")]),
        )
        .ok()
        .unwrap();
        assert_eq!(reversed[0]["name"], "q249");
        let filtered = list(items(), &query(&[("name", "Q01"), ("page", "1")]))
            .ok()
            .unwrap();
        assert_eq!(filtered["filtered_count"], 10);
        let regex = list(
            items(),
            &query(&[("name", "^q00[0-4]$"), ("use_regex", "true")]),
        )
        .ok()
        .unwrap();
        assert_eq!(regex.as_array().map(Vec::len), Some(5));
        let columns = list(items(), &query(&[("columns", "name,messages")]))
            .ok()
            .unwrap();
        assert_eq!(columns[0], json!({ "name": "q000", "messages": 250 }));
        assert!(list(items(), &query(&[("page", "0")])).is_err());
        assert!(list(items(), &query(&[("page", "9")])).is_err());
        assert!(list(items(), &query(&[("page", "1"), ("page_size", "501")])).is_err());
        assert!(list(items(), &query(&[("name", "("), ("use_regex", "true")])).is_err());
    }
}
