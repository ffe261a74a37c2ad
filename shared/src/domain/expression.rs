//! JMESPath expressions (pipeline `transform` steps, `enqueue` step `items`)
//! whose cost is bounded, so a hostile expression cannot take the process down.
//!
//! The `jmespath` crate parses by recursing once per token, and interprets,
//! clones and drops its syntax tree recursively: a deep expression overflows
//! the stack, which aborts the process. Its values share structure through
//! `Arc`, so `[@,@]` piped 30 times is cheap to build but has 2^30 nodes once
//! written out, compared or flattened. Hence:
//!
//! - [`Expression::compile`] refuses long text, parses on a thread with a large
//!   stack and refuses trees deeper than [`MAX_EXPRESSION_DEPTH`], so every
//!   later recursion over the tree is shallow.
//! - [`Expression::evaluate`] runs this module's own interpreter over the
//!   crate's syntax tree and values, with the crate's semantics, charging work
//!   against [`EVALUATION_BUDGET`]: visiting a syntax node costs 1; building an
//!   array or object costs its length; comparing for equality, `contains` and
//!   `to_string` first measure their operands (shared parts counted each time
//!   they appear, the walk stopping once it exceeds what is left) and pay for
//!   that size; the shallow builtins pay for their arguments' elements (times
//!   log n for `sort`). Text costs one unit per [`TEXT_BYTES_PER_UNIT`] bytes.
//!   The result is measured the same way against [`MAX_RESULT_NODES`] before it
//!   is written out as JSON. Values that are compared, written out as text or
//!   returned may nest at most [`MAX_VALUE_NESTING`] deep, since those walks
//!   recurse.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::io;

use jmespath::ast::{Ast, Comparator, KeyValuePair};
use jmespath::functions::{ArgumentType as Arg, Signature};
use jmespath::{Context, DEFAULT_RUNTIME, ErrorReason, Rcvar, RuntimeError, Variable};
use serde_json::Value;

/// Longest accepted expression text, in bytes.
pub const MAX_EXPRESSION_BYTES: usize = 2048;

/// Deepest accepted syntax tree (the root counts as depth 1). Evaluation
/// recurses once per level, so this bounds its stack use.
pub const MAX_EXPRESSION_DEPTH: usize = 64;

/// Work units one evaluation may spend (see the module doc for what costs
/// what). A transform of a 10 KB event spends a few hundred to a few
/// thousand; a projection over every element of a 256 KiB input a few hundred
/// thousand. Spending it all takes under 100 ms and 50 MB in a release build.
pub const EVALUATION_BUDGET: u64 = 1_000_000;

/// Largest result, in JSON nodes: every value counts one (array elements and
/// object members included, shared parts each time they appear), and text one
/// more per [`TEXT_BYTES_PER_UNIT`] bytes, so a result holds at most ~1.6 MB
/// of text.
pub const MAX_RESULT_NODES: usize = 100_000;

/// Most arrays and objects nested in one another in a value that evaluation
/// compares, writes out as text or returns: serde_json's default parser reads
/// no deeper, and the recursive walks over such a value (comparison,
/// serialisation) then stay far from the end of the stack.
pub const MAX_VALUE_NESTING: usize = 127;

/// Bytes of text (strings and object keys) that cost one work unit or count
/// as one node: copying or comparing text is far cheaper per byte than
/// visiting a node, but not free.
pub const TEXT_BYTES_PER_UNIT: usize = 16;

/// Stack of the parser thread. The crate's parser recurses once per token: a
/// [`MAX_EXPRESSION_BYTES`] expression needs 8 to 16 MiB in a debug build
/// (measured), far less in release. Untouched stack costs no memory.
const PARSER_STACK_BYTES: usize = 64 << 20;

/// A compiled JMESPath expression, cheap and safe to evaluate any number of times.
#[derive(Clone, Debug)]
pub struct Expression {
    text: String,
    ast: Ast,
}

/// Why an expression was refused or its evaluation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExpressionError {
    /// Refused at compile: too long, too deep, or not JMESPath (message says which).
    #[error("invalid JMESPath expression: {0}")]
    Invalid(String),
    /// Evaluation failed the way JMESPath says it can (type errors, unknown function, ...).
    #[error("JMESPath evaluation failed: {0}")]
    Runtime(String),
    /// Evaluation would exceed the work budget, the result size or the nesting limit.
    #[error("JMESPath expression too expensive: {0}")]
    TooExpensive(String),
}

impl Expression {
    /// Compiles `text`. Never overflows the stack, whatever `text` is: the
    /// length is checked first, then the text is parsed on a dedicated thread
    /// with a large stack, where a tree deeper than [`MAX_EXPRESSION_DEPTH`]
    /// is also dropped.
    ///
    /// # Panics
    /// If the operating system cannot start a thread.
    pub fn compile(text: &str) -> Result<Expression, ExpressionError> {
        if text.len() > MAX_EXPRESSION_BYTES {
            return Err(ExpressionError::Invalid(format!(
                "it is {} bytes long; the limit is {MAX_EXPRESSION_BYTES}",
                text.len()
            )));
        }
        let parsed = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("jmespath-parse".to_owned())
                .stack_size(PARSER_STACK_BYTES)
                .spawn_scoped(scope, || parse_shallow(text))
                .expect("start the JMESPath parser thread")
                .join()
        });
        // A panic in the third-party parser is this text's fault, not the caller's.
        let ast = parsed.unwrap_or_else(|_| {
            Err(ExpressionError::Invalid(
                "the parser failed on it".to_owned(),
            ))
        })?;
        Ok(Expression {
            text: text.to_owned(),
            ast,
        })
    }

    /// The text this expression was compiled from.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Evaluates the expression against `data`. Pure CPU, bounded by
    /// [`EVALUATION_BUDGET`] and [`MAX_RESULT_NODES`]. Recursion is bounded
    /// by [`MAX_EXPRESSION_DEPTH`] over the tree, by [`MAX_VALUE_NESTING`]
    /// over compared and returned values, and by the depth of `data` (plus at
    /// most one level per byte of the expression) when values are read in and
    /// dropped: well within a 2 MiB stack for `data` that serde_json parsed.
    pub fn evaluate(&self, data: &Value) -> Result<Value, ExpressionError> {
        let data = Variable::try_from(data)
            .map_err(|e| ExpressionError::Runtime(format!("unreadable input: {}", e.reason)))?;
        let mut evaluation = Evaluation {
            text: &self.text,
            remaining: EVALUATION_BUDGET,
        };
        let result = evaluation.eval(&self.ast, &Rcvar::new(data))?;
        size(&result, MAX_RESULT_NODES as u64).map_err(|oversize| match oversize {
            Oversize::Larger => ExpressionError::TooExpensive(format!(
                "the result has more than {MAX_RESULT_NODES} nodes"
            )),
            Oversize::Deeper => too_deep(),
        })?;
        serde_json::to_value(&*result)
            .map_err(|e| ExpressionError::Runtime(format!("unwritable result: {e}")))
    }
}

/// Parses `text` and refuses a tree deeper than [`MAX_EXPRESSION_DEPTH`].
/// Runs on the parser thread, so a refused tree is dropped there too.
fn parse_shallow(text: &str) -> Result<Ast, ExpressionError> {
    let ast = jmespath::parse(text)
        .map_err(|e| ExpressionError::Invalid(e.to_string().trim_end().to_owned()))?;
    let depth = shape(&ast).depth;
    if depth > MAX_EXPRESSION_DEPTH {
        return Err(ExpressionError::Invalid(format!(
            "it nests {depth} levels deep; the limit is {MAX_EXPRESSION_DEPTH}"
        )));
    }
    Ok(ast)
}

/// Node count and depth of a syntax tree.
struct Shape {
    nodes: u64,
    depth: usize,
}

/// Measures a syntax tree with an explicit stack: the tree may be far deeper
/// than the calling thread's stack allows to recurse.
fn shape(root: &Ast) -> Shape {
    let mut shape = Shape { nodes: 0, depth: 0 };
    let mut pending = vec![(root, 1)];
    while let Some((node, depth)) = pending.pop() {
        shape.nodes += 1;
        shape.depth = shape.depth.max(depth);
        let below = depth + 1;
        match node {
            Ast::Comparison { lhs, rhs, .. }
            | Ast::And { lhs, rhs, .. }
            | Ast::Or { lhs, rhs, .. }
            | Ast::Projection { lhs, rhs, .. }
            | Ast::Subexpr { lhs, rhs, .. } => pending.extend([(&**lhs, below), (&**rhs, below)]),
            Ast::Condition {
                predicate, then, ..
            } => pending.extend([(&**predicate, below), (&**then, below)]),
            Ast::Expref { ast: child, .. }
            | Ast::Flatten { node: child, .. }
            | Ast::Not { node: child, .. }
            | Ast::ObjectValues { node: child, .. } => pending.push((child, below)),
            Ast::Function { args: list, .. } | Ast::MultiList { elements: list, .. } => {
                pending.extend(list.iter().map(|child| (child, below)));
            }
            Ast::MultiHash { elements, .. } => {
                pending.extend(elements.iter().map(|pair| (&pair.value, below)));
            }
            Ast::Identity { .. }
            | Ast::Field { .. }
            | Ast::Index { .. }
            | Ast::Literal { .. }
            | Ast::Slice { .. } => {}
        }
    }
    shape
}

/// Work units for `bytes` bytes of text.
fn text_cost(bytes: usize) -> u64 {
    (bytes / TEXT_BYTES_PER_UNIT) as u64
}

/// Work units for copying a syntax tree into a value (an expression
/// reference): as much as text of the same size, since it is copied as often.
fn tree_cost(ast: &Ast) -> u64 {
    shape(ast).nodes * text_cost(std::mem::size_of::<Ast>())
}

/// Why [`size`] gave up on a value.
enum Oversize {
    /// Larger than the limit it was given.
    Larger,
    /// Nested deeper than [`MAX_VALUE_NESTING`].
    Deeper,
}

/// Logical size of `value`: one per value, shared parts counted each time
/// they appear, plus the cost of its text (strings and keys) and of any
/// expression reference's tree (written out as text in a result). Gives up once the size exceeds `limit`, so
/// measuring a huge shared structure costs at most `limit` steps, or once the
/// nesting exceeds [`MAX_VALUE_NESTING`]. Uses an explicit stack, so the
/// depth of `value` does not matter.
fn size(value: &Variable, limit: u64) -> Result<u64, Oversize> {
    let mut total: u64 = 0;
    let mut pending: Vec<(&Variable, usize)> = Vec::new();
    let mut next = Some((value, 0));
    while let Some((value, outer)) = next {
        total += 1;
        let nesting = outer + 1;
        match value {
            Variable::String(text) => total += text_cost(text.len()),
            Variable::Expref(ast) => total += tree_cost(ast),
            Variable::Array(_) | Variable::Object(_) if nesting > MAX_VALUE_NESTING => {
                return Err(Oversize::Deeper);
            }
            Variable::Array(items) => pending.extend(items.iter().map(|item| (&**item, nesting))),
            Variable::Object(members) => {
                total += members.keys().map(|key| text_cost(key.len())).sum::<u64>();
                pending.extend(members.values().map(|member| (&**member, nesting)));
            }
            Variable::Null | Variable::Bool(_) | Variable::Number(_) => {}
        }
        // Each pending value will count at least one.
        if total + pending.len() as u64 > limit {
            return Err(Oversize::Larger);
        }
        next = pending.pop();
    }
    Ok(total)
}

/// What a shallow builtin may touch: the value, its elements or members,
/// their keys and the text of the ones that are strings.
fn shallow_size(value: &Variable) -> u64 {
    let own = |value: &Variable| 1 + value.as_string().map_or(0, |text| text_cost(text.len()));
    own(value)
        + match value {
            Variable::Array(items) => items.iter().map(|item| own(item)).sum(),
            Variable::Object(members) => members
                .iter()
                .map(|(key, member)| text_cost(key.len()) + own(member))
                .sum(),
            _ => 0,
        }
}

/// Comparisons per element when sorting `n` elements: ceil(log2 n), at least 1.
fn sort_factor(n: usize) -> u64 {
    u64::from(usize::BITS - n.leading_zeros()).max(1)
}

fn null() -> Rcvar {
    Rcvar::new(Variable::Null)
}

fn boolean(value: bool) -> Rcvar {
    Rcvar::new(Variable::Bool(value))
}

fn array(items: Vec<Rcvar>) -> Rcvar {
    Rcvar::new(Variable::Array(items))
}

fn too_deep() -> ExpressionError {
    ExpressionError::TooExpensive(format!(
        "a value nests more than {MAX_VALUE_NESTING} arrays or objects deep"
    ))
}

fn over_budget() -> ExpressionError {
    ExpressionError::TooExpensive(format!(
        "evaluation needs more than {EVALUATION_BUDGET} work units"
    ))
}

/// A function's own error (arity, argument or return type), named after it.
fn function_error(name: &str, reason: ErrorReason) -> ExpressionError {
    let message = match reason {
        ErrorReason::Runtime(error) => error.to_string(),
        ErrorReason::Parse(message) => message,
    };
    ExpressionError::Runtime(format!("{name}(): {message}"))
}

/// Checks arity and argument types the way the crate's builtins do.
fn check_signature(
    name: &str,
    args: &[Rcvar],
    inputs: Vec<Arg>,
    ctx: &Context<'_>,
) -> Result<(), ExpressionError> {
    Signature::new(inputs, None)
        .validate(args, ctx)
        .map_err(|e| function_error(name, e.reason))
}

/// `[start:stop:step]` of an array, clamped as JMESPath says. Index arithmetic
/// is 64-bit: the crate's own 32-bit `i += step` overflows on a huge step.
fn slice(items: &[Rcvar], start: Option<i32>, stop: Option<i32>, step: i32) -> Vec<Rcvar> {
    let len = items.len() as i64;
    let step = i64::from(step);
    let clamp = |end: i32| {
        let end = i64::from(end);
        let end = if end < 0 { end + len } else { end };
        if step < 0 {
            end.clamp(-1, len - 1)
        } else {
            end.clamp(0, len)
        }
    };
    let at = |i: i64| items[i as usize].clone();
    if step > 0 {
        let (from, to) = (start.map_or(0, clamp), stop.map_or(len, clamp));
        (from..to).step_by(step as usize).map(at).collect()
    } else {
        let (from, to) = (start.map_or(len - 1, clamp), stop.map_or(-1, clamp));
        (to + 1..=from)
            .rev()
            .step_by(step.unsigned_abs() as usize)
            .map(at)
            .collect()
    }
}

/// A byte buffer that refuses to grow past `limit`, so that serialising a
/// huge shared structure stops early.
struct BoundedWriter {
    bytes: Vec<u8>,
    limit: usize,
}

impl io::Write for BoundedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bytes.len() + buf.len() > self.limit {
            return Err(io::Error::other("over budget"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One evaluation: the expression text (for error context) and what is left
/// of the budget.
struct Evaluation<'a> {
    text: &'a str,
    remaining: u64,
}

impl Evaluation<'_> {
    fn charge(&mut self, units: u64) -> Result<(), ExpressionError> {
        self.remaining = self.remaining.checked_sub(units).ok_or_else(over_budget)?;
        Ok(())
    }

    /// Charges the logical size of `value`, measuring no further than the
    /// budget, before a walk over it that recurses once per nesting level.
    fn charge_size(&mut self, value: &Variable) -> Result<(), ExpressionError> {
        match size(value, self.remaining) {
            Ok(units) => self.charge(units),
            Err(Oversize::Larger) => Err(over_budget()),
            Err(Oversize::Deeper) => Err(too_deep()),
        }
    }

    /// Interprets `node` against `data`. Each arm is small or delegates, to
    /// keep this frame, which recurses once per tree level, small.
    fn eval(&mut self, node: &Ast, data: &Rcvar) -> Result<Rcvar, ExpressionError> {
        self.charge(1)?;
        match node {
            Ast::Identity { .. } => Ok(data.clone()),
            Ast::Literal { value, .. } => Ok(value.clone()),
            Ast::Field { name, .. } => {
                self.charge(text_cost(name.len()))?;
                Ok(data.get_field(name))
            }
            Ast::Index { idx, .. } => Ok(match usize::try_from(*idx) {
                Ok(index) => data.get_index(index),
                Err(_) => data.get_negative_index(idx.unsigned_abs() as usize),
            }),
            Ast::Slice {
                start, stop, step, ..
            } => self.slice(data, *start, *stop, *step),
            Ast::Subexpr { lhs, rhs, .. } => {
                let left = self.eval(lhs, data)?;
                self.eval(rhs, &left)
            }
            Ast::Or { lhs, rhs, .. } => {
                let left = self.eval(lhs, data)?;
                if left.is_truthy() {
                    Ok(left)
                } else {
                    self.eval(rhs, data)
                }
            }
            Ast::And { lhs, rhs, .. } => {
                let left = self.eval(lhs, data)?;
                if left.is_truthy() {
                    self.eval(rhs, data)
                } else {
                    Ok(left)
                }
            }
            Ast::Not { node, .. } => Ok(boolean(!self.eval(node, data)?.is_truthy())),
            Ast::Condition {
                predicate, then, ..
            } => {
                if self.eval(predicate, data)?.is_truthy() {
                    self.eval(then, data)
                } else {
                    Ok(null())
                }
            }
            Ast::Comparison {
                comparator,
                lhs,
                rhs,
                ..
            } => self.compare(comparator, lhs, rhs, data),
            Ast::ObjectValues { node, .. } => self.object_values(node, data),
            Ast::Projection { lhs, rhs, .. } => self.project(lhs, rhs, data),
            Ast::Flatten { node, .. } => self.flatten(node, data),
            Ast::MultiList { elements, .. } => self.multi_list(elements, data),
            Ast::MultiHash { elements, .. } => self.multi_hash(elements, data),
            Ast::Function { name, args, .. } => self.call(name, args, data),
            Ast::Expref { ast, .. } => {
                self.charge(tree_cost(ast))?;
                Ok(Rcvar::new(Variable::Expref((**ast).clone())))
            }
        }
    }

    fn slice(
        &mut self,
        data: &Rcvar,
        start: Option<i32>,
        stop: Option<i32>,
        step: i32,
    ) -> Result<Rcvar, ExpressionError> {
        if step == 0 {
            return Err(ExpressionError::Runtime(
                "slice step cannot be 0".to_owned(),
            ));
        }
        let Some(items) = data.as_array() else {
            return Ok(null());
        };
        // At most as long as an array that already exists: charging after is safe.
        let sliced = slice(items, start, stop, step);
        self.charge(sliced.len() as u64)?;
        Ok(array(sliced))
    }

    fn compare(
        &mut self,
        comparator: &Comparator,
        lhs: &Ast,
        rhs: &Ast,
        data: &Rcvar,
    ) -> Result<Rcvar, ExpressionError> {
        let left = self.eval(lhs, data)?;
        let right = self.eval(rhs, data)?;
        // Ordering compares numbers only; (in)equality may walk both sides.
        if matches!(comparator, Comparator::Equal | Comparator::NotEqual) {
            self.charge_size(&left)?;
            self.charge_size(&right)?;
        }
        Ok(left.compare(comparator, &right).map_or_else(null, boolean))
    }

    fn object_values(&mut self, node: &Ast, data: &Rcvar) -> Result<Rcvar, ExpressionError> {
        let subject = self.eval(node, data)?;
        let Some(members) = subject.as_object() else {
            return Ok(null());
        };
        self.charge(members.len() as u64)?;
        Ok(array(members.values().cloned().collect()))
    }

    fn project(&mut self, lhs: &Ast, rhs: &Ast, data: &Rcvar) -> Result<Rcvar, ExpressionError> {
        let left = self.eval(lhs, data)?;
        let Some(items) = left.as_array() else {
            return Ok(null());
        };
        let mut collected = Vec::new();
        for item in items {
            let value = self.eval(rhs, item)?;
            if !value.is_null() {
                collected.push(value);
            }
        }
        self.charge(collected.len() as u64)?;
        Ok(array(collected))
    }

    fn flatten(&mut self, node: &Ast, data: &Rcvar) -> Result<Rcvar, ExpressionError> {
        let value = self.eval(node, data)?;
        let Some(items) = value.as_array() else {
            return Ok(null());
        };
        self.charge(items.len() as u64)?;
        let total: usize = items
            .iter()
            .map(|item| item.as_array().map_or(1, Vec::len))
            .sum();
        // Charged before allocating: repeated `[@,@][]` doubles a real array each time.
        self.charge(total as u64)?;
        let mut flat = Vec::with_capacity(total);
        for item in items {
            match item.as_array() {
                Some(inner) => flat.extend(inner.iter().cloned()),
                None => flat.push(item.clone()),
            }
        }
        Ok(array(flat))
    }

    fn multi_list(&mut self, elements: &[Ast], data: &Rcvar) -> Result<Rcvar, ExpressionError> {
        if data.is_null() {
            return Ok(null());
        }
        self.charge(elements.len() as u64)?;
        let mut collected = Vec::with_capacity(elements.len());
        for element in elements {
            collected.push(self.eval(element, data)?);
        }
        Ok(array(collected))
    }

    fn multi_hash(
        &mut self,
        elements: &[KeyValuePair],
        data: &Rcvar,
    ) -> Result<Rcvar, ExpressionError> {
        if data.is_null() {
            return Ok(null());
        }
        let keys: u64 = elements.iter().map(|pair| text_cost(pair.key.len())).sum();
        self.charge(elements.len() as u64 + keys)?;
        let mut collected = BTreeMap::new();
        for pair in elements {
            let value = self.eval(&pair.value, data)?;
            collected.insert(pair.key.clone(), value);
        }
        Ok(Rcvar::new(Variable::Object(collected)))
    }

    /// Evaluates the arguments, then runs the function: this module's own
    /// implementation for those that evaluate expression references or walk
    /// values deeply, the crate's builtin for the shallow ones.
    fn call(&mut self, name: &str, args: &[Ast], data: &Rcvar) -> Result<Rcvar, ExpressionError> {
        let mut values = Vec::with_capacity(args.len());
        for arg in args {
            values.push(self.eval(arg, data)?);
        }
        let mut ctx = Context::new(self.text, &DEFAULT_RUNTIME);
        match name {
            "map" => self.map(&values, &ctx),
            "sort_by" => self.sort_by(&values, &ctx),
            "max_by" => self.best_by(name, &values, &ctx, Ordering::Greater),
            "min_by" => self.best_by(name, &values, &ctx, Ordering::Less),
            "contains" => self.contains(&values, &ctx),
            "to_string" => self.stringify(&values, &ctx),
            _ => self.builtin(name, &values, &mut ctx),
        }
    }

    fn builtin(
        &mut self,
        name: &str,
        args: &[Rcvar],
        ctx: &mut Context<'_>,
    ) -> Result<Rcvar, ExpressionError> {
        let Some(function) = DEFAULT_RUNTIME.get_function(name) else {
            return Err(ExpressionError::Runtime(format!(
                "unknown function {name}()"
            )));
        };
        let shallow: u64 = args.iter().map(|arg| shallow_size(arg)).sum();
        let length = |list: &Rcvar| list.as_array().map_or(0, Vec::len);
        self.charge(match (name, args) {
            ("sort", [list]) => shallow * sort_factor(length(list)),
            // The glue is copied between every two elements.
            ("join", [glue, list]) => shallow + shallow_size(glue) * length(list) as u64,
            _ => shallow,
        })?;
        function
            .evaluate(args, ctx)
            .map_err(|e| function_error(name, e.reason))
    }

    fn map(&mut self, args: &[Rcvar], ctx: &Context<'_>) -> Result<Rcvar, ExpressionError> {
        check_signature("map", args, vec![Arg::Expref, Arg::Array], ctx)?;
        let (Variable::Expref(ast), Variable::Array(items)) = (&*args[0], &*args[1]) else {
            unreachable!("checked by the signature");
        };
        self.charge(items.len() as u64)?;
        let mut mapped = Vec::with_capacity(items.len());
        for item in items {
            mapped.push(self.eval(ast, item)?);
        }
        Ok(array(mapped))
    }

    fn sort_by(&mut self, args: &[Rcvar], ctx: &Context<'_>) -> Result<Rcvar, ExpressionError> {
        check_signature("sort_by", args, vec![Arg::Array, Arg::Expref], ctx)?;
        let (Variable::Array(items), Variable::Expref(ast)) = (&*args[0], &*args[1]) else {
            unreachable!("checked by the signature");
        };
        self.charge(items.len() as u64)?;
        let mut keyed: Vec<(Rcvar, Rcvar)> = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let first = keyed.first().map(|(key, _)| key);
            let key = self.sort_key("sort_by", ast, item, first, index)?;
            keyed.push((key, item.clone()));
        }
        let compared: u64 = keyed.iter().map(|(key, _)| shallow_size(key)).sum();
        self.charge(compared * sort_factor(keyed.len()))?;
        // Stable, as the crate's: equal keys keep their order.
        keyed.sort_by(|(a, _), (b, _)| a.cmp(b));
        Ok(array(keyed.into_iter().map(|(_, item)| item).collect()))
    }

    /// `max_by` (`wanted` = Greater) or `min_by` (Less): the first element
    /// whose key beats every other's.
    fn best_by(
        &mut self,
        name: &str,
        args: &[Rcvar],
        ctx: &Context<'_>,
        wanted: Ordering,
    ) -> Result<Rcvar, ExpressionError> {
        check_signature(name, args, vec![Arg::Array, Arg::Expref], ctx)?;
        let (Variable::Array(items), Variable::Expref(ast)) = (&*args[0], &*args[1]) else {
            unreachable!("checked by the signature");
        };
        let mut best: Option<(Rcvar, &Rcvar)> = None;
        for (index, item) in items.iter().enumerate() {
            let first = best.as_ref().map(|(key, _)| key);
            let key = self.sort_key(name, ast, item, first, index)?;
            self.charge(shallow_size(&key))?;
            if best.as_ref().is_none_or(|(top, _)| key.cmp(top) == wanted) {
                best = Some((key, item));
            }
        }
        Ok(best.map_or_else(null, |(_, item)| item.clone()))
    }

    /// The key of `item` for `sort_by`, `max_by` and `min_by`: a string or a
    /// number, of the same type as the keys before it (`earlier`, any one of them).
    fn sort_key(
        &mut self,
        name: &str,
        ast: &Ast,
        item: &Rcvar,
        earlier: Option<&Rcvar>,
        index: usize,
    ) -> Result<Rcvar, ExpressionError> {
        let key = self.eval(ast, item)?;
        let expected = match earlier {
            None if key.is_string() || key.is_number() => return Ok(key),
            None => "expression->number|expression->string".to_owned(),
            Some(earlier) if earlier.get_type() == key.get_type() => return Ok(key),
            Some(earlier) => format!("expression->{}", earlier.get_type()),
        };
        let error = RuntimeError::InvalidReturnType {
            expected,
            actual: key.get_type().to_string(),
            position: 1,
            invocation: index + 1,
        };
        Err(function_error(name, ErrorReason::Runtime(error)))
    }

    fn contains(&mut self, args: &[Rcvar], ctx: &Context<'_>) -> Result<Rcvar, ExpressionError> {
        let haystack = Arg::Union(vec![Arg::String, Arg::Array]);
        check_signature("contains", args, vec![haystack, Arg::Any], ctx)?;
        let (haystack, needle) = (&args[0], &args[1]);
        let found = match &**haystack {
            Variable::String(text) => {
                self.charge(shallow_size(haystack) + shallow_size(needle))?;
                needle
                    .as_string()
                    .is_some_and(|part| text.contains(part.as_str()))
            }
            Variable::Array(items) => {
                self.charge_size(haystack)?;
                self.charge_size(needle)?;
                items.contains(needle)
            }
            _ => unreachable!("checked by the signature"),
        };
        Ok(boolean(found))
    }

    fn stringify(&mut self, args: &[Rcvar], ctx: &Context<'_>) -> Result<Rcvar, ExpressionError> {
        use Arg::{Array, Bool, Null, Number, Object, String as Text, Union};
        let not_expref = Union(vec![Object, Array, Bool, Number, Text, Null]);
        check_signature("to_string", args, vec![not_expref], ctx)?;
        let value = &args[0];
        if value.is_string() {
            return Ok(value.clone());
        }
        // The size bounds the nodes walked; the writer bounds the bytes written,
        // since escaping and number formatting make text longer than its cost.
        self.charge_size(value)?;
        let limit = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .saturating_mul(TEXT_BYTES_PER_UNIT);
        let mut out = BoundedWriter {
            bytes: Vec::new(),
            limit,
        };
        // Only the writer can fail: every key is a string.
        serde_json::to_writer(&mut out, &**value).map_err(|_| over_budget())?;
        self.charge(text_cost(out.bytes.len()))?;
        let text = String::from_utf8(out.bytes).expect("serde_json writes UTF-8");
        Ok(Rcvar::new(Variable::String(text)))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use serde_json::json;

    use super::*;

    fn eval(text: &str, data: &Value) -> Result<Value, ExpressionError> {
        Expression::compile(text)?.evaluate(data)
    }

    /// Runs `f` on a thread with cargo test's default 2 MiB stack, whatever
    /// RUST_MIN_STACK says, so stack limits are realistic.
    fn on_small_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn_scoped(scope, f)
                .expect("start a test thread")
                .join()
                .expect("test thread panicked")
        })
    }

    /// A ~10 KB order event, as a pipeline would see it.
    fn order_event() -> Value {
        let lines: Vec<Value> = (0..80)
            .map(|i| {
                json!({
                    "sku": format!("SKU-{i:04}"),
                    "name": format!("Item number {i}"),
                    "qty": i % 5 + 1,
                    "price": 3.5 * f64::from(i) + 0.99,
                    "tags": if i % 3 == 0 { json!(["fragile", "gift"]) } else { json!(["standard"]) },
                    "warehouse": {"id": format!("WH-{}", i % 4), "zone": i % 7},
                })
            })
            .collect();
        json!({"event": {
            "order_id": "ord-12345",
            "paid": true,
            "customer": {"id": "cus-42", "name": "Ada", "email": "ada@example.com", "tier": null},
            "lines": lines,
            "total": 1234.5,
            "notes": null,
        }})
    }

    fn big_string() -> Value {
        json!({"s": "x".repeat(200_000)})
    }

    /// 100,000 zeros: ~200 KB of JSON.
    fn big_array() -> Value {
        Value::Array(vec![json!(0); 100_000])
    }

    /// `` `1` `` followed by `| [@,@]` `n` times: 2^n leaves, all shared.
    fn doubling(n: usize) -> String {
        format!("`1`{}", " | [@,@]".repeat(n))
    }

    /// Pipes of wide multi-select lists, padded to 2047 bytes: many small pieces.
    fn wide_pipes() -> String {
        let stage = format!("[{}@]", "@,".repeat(59));
        let mut text = vec![stage; 16].join(" | ");
        text.push_str(&" ".repeat(2047 - text.len()));
        text
    }

    /// Pipes of deeply nested multi-select lists, as many as fit in
    /// [`MAX_EXPRESSION_BYTES`] before `tail`: each nests the value 30 deeper.
    fn deep_pipes(tail: &str) -> String {
        let stage = format!("{}@{}", "[".repeat(30), "]".repeat(30));
        let stages = (MAX_EXPRESSION_BYTES - tail.len()) / (stage.len() + 3);
        format!("{}{tail}", vec![stage; stages].join(" | "))
    }

    #[test]
    fn compiles_and_evaluates_a_transform() {
        let expression = Expression::compile("{id: event.order_id, skus: event.lines[:2].sku}")
            .expect("compiles");
        assert_eq!(
            expression.text(),
            "{id: event.order_id, skus: event.lines[:2].sku}"
        );
        assert_eq!(
            expression.evaluate(&order_event()),
            Ok(json!({"id": "ord-12345", "skus": ["SKU-0000", "SKU-0001"]}))
        );
        fn shareable<T: Clone + Send + Sync>(_: &T) {}
        shareable(&expression);
    }

    #[test]
    fn reports_what_is_wrong() {
        let data = order_event();
        let runtime = |text: &str| match eval(text, &data) {
            Err(ExpressionError::Runtime(message)) => message,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(
            runtime("length(event.total)"),
            "length(): Argument 0 expects type array|object|string, given number"
        );
        assert_eq!(runtime("nope(@)"), "unknown function nope()");
        assert_eq!(runtime("event.lines[::0]"), "slice step cannot be 0");
        assert_eq!(
            runtime("sort_by(event.lines, &tags)"),
            "sort_by(): Argument 1 must return expression->number|expression->string \
             but invocation 1 returned array"
        );
        assert!(matches!(
            Expression::compile("event.["),
            Err(ExpressionError::Invalid(message)) if message.starts_with("Parse error")
        ));
        let long = format!("a{}", " ".repeat(MAX_EXPRESSION_BYTES));
        assert_eq!(
            Expression::compile(&long).unwrap_err().to_string(),
            "invalid JMESPath expression: it is 2049 bytes long; the limit is 2048"
        );
        assert!(Expression::compile(&long[..MAX_EXPRESSION_BYTES]).is_ok());
        assert_eq!(
            eval(&doubling(30), &data).unwrap_err(),
            ExpressionError::TooExpensive("the result has more than 100000 nodes".to_owned())
        );
        assert_eq!(
            eval(&"[@,@][]".repeat(30), &data).unwrap_err(),
            ExpressionError::TooExpensive(
                "evaluation needs more than 1000000 work units".to_owned()
            )
        );
    }

    #[test]
    fn slices_like_jmespath_without_overflowing() {
        let data = json!([0, 1, 2, 3, 4, 5]);
        for (text, expected) in [
            ("[1:4]", json!([1, 2, 3])),
            ("[::-2]", json!([5, 3, 1])),
            ("[-2:]", json!([4, 5])),
            ("[10:-10:-1]", json!([5, 4, 3, 2, 1, 0])),
            ("[-10:10]", json!([0, 1, 2, 3, 4, 5])),
            ("[4:1]", json!([])),
            // The crate's 32-bit index arithmetic overflows (and panics) on these.
            ("[1::2147483647]", json!([1])),
            ("[4::-2147483647]", json!([4])),
        ] {
            assert_eq!(eval(text, &data), Ok(expected), "{text}");
        }
    }

    #[test]
    fn walks_values_as_deep_as_serde_json_parses() {
        let nested = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        let deepest: Value = serde_json::from_str(&nested(MAX_VALUE_NESTING)).expect("parses");
        on_small_stack(|| {
            assert_eq!(eval("@", &deepest), Ok(deepest.clone()));
            assert_eq!(eval("@ == @", &deepest), Ok(json!(true)));
            assert_eq!(
                eval("to_string(@)", &deepest),
                Ok(json!(nested(MAX_VALUE_NESTING)))
            );
            assert_eq!(
                eval("[@]", &deepest),
                Err(ExpressionError::TooExpensive(
                    "a value nests more than 127 arrays or objects deep".to_owned()
                ))
            );
            assert!(matches!(
                eval("[@] == [@]", &deepest),
                Err(ExpressionError::TooExpensive(_))
            ));
            assert_eq!(eval("length([[@]])", &deepest), Ok(json!(1)));
        });
    }

    #[test]
    fn result_size_counts_text() {
        // Eight references to one 200 KB string: cheap to build, 1.6 MB to write out.
        let eight = format!("s | [{}@]", "@,".repeat(7));
        assert!(matches!(
            eval(&eight, &big_string()),
            Err(ExpressionError::TooExpensive(_))
        ));
        assert!(eval("s | [@,@,@,@]", &big_string()).is_ok());
    }

    #[test]
    fn deepest_accepted_expressions_evaluate_on_a_small_stack() {
        let nested = |open: &'static str, leaf: &'static str, close: &'static str| {
            move |n: usize| format!("{}{leaf}{}", open.repeat(n), close.repeat(n))
        };
        let constructs: Vec<Box<dyn Fn(usize) -> String + Sync>> = vec![
            Box::new(nested("!", "@", "")),
            Box::new(nested("[", "@", "]")),
            Box::new(nested("not_null(", "@", ")")),
            Box::new(nested("{a: ", "@", "}")),
            Box::new(nested("", "@", " | @")),
            Box::new(nested("", "@", "[*]")),
            Box::new(nested("", "@", "[?@]")),
            Box::new(nested("", "@", ".a")),
            Box::new(nested("map(&", "@", ", [@])")),
            Box::new(nested("sort_by([@], &", "`1`", ")")),
            Box::new(nested("max_by([@], &to_string(", "@", "))")),
            Box::new(nested("contains([@], ", "@", ")")),
            Box::new(nested("", "@", " || @")),
            Box::new(nested("", "@", " == @")),
        ];
        // As deep as serde_json lets a parsed document be.
        let nesting = MAX_VALUE_NESTING;
        let data: Value =
            serde_json::from_str(&format!("{}1{}", "[".repeat(nesting), "]".repeat(nesting)))
                .expect("parses");
        on_small_stack(|| {
            for construct in &constructs {
                let (text, expression) = (1..=MAX_EXPRESSION_DEPTH)
                    .rev()
                    .find_map(|n| Some((construct(n), Expression::compile(&construct(n)).ok()?)))
                    .expect("some nesting is accepted");
                assert!(
                    shape(&expression.ast).depth > MAX_EXPRESSION_DEPTH - 3,
                    "{text}"
                );
                // Whatever the outcome, it comes back, and quickly.
                let started = Instant::now();
                let outcome = expression.evaluate(&data);
                assert!(
                    started.elapsed() < Duration::from_secs(1),
                    "{text}: {outcome:?}"
                );
            }
        });
        let too_deep = format!("{}@", "!".repeat(MAX_EXPRESSION_DEPTH));
        assert!(matches!(
            Expression::compile(&too_deep),
            Err(ExpressionError::Invalid(message)) if message.contains("65 levels deep")
        ));
    }

    /// Expressions that overflow the crate's recursive parser (or its
    /// interpreter, Clone and Drop on the tree it builds).
    fn hostile_texts() -> Vec<String> {
        vec![
            format!("{}@", "!".repeat(2000)),
            format!("{}@", "!".repeat(2047)),
            "!".repeat(100_000),
            "(".repeat(100_000),
            "(".repeat(2048),
            "[".repeat(100_000),
            "[".repeat(2048),
            "{a:".repeat(1000),
            "{a:".repeat(682),
            format!("{}a", "a.".repeat(5000)),
            format!("{}a", "a.".repeat(1023)),
            "a.".repeat(3000),
            format!("{}a", "a||".repeat(682)),
            format!("{}a", "a || ".repeat(5000)),
            format!("a{}", "[*]".repeat(682)),
            format!("a{}", "[*]".repeat(3000)),
            "f(".repeat(1000),
            format!("{}@", "&".repeat(2047)),
            format!("{}a", "[?".repeat(1000)),
        ]
    }

    #[test]
    fn refuses_hostile_expressions_at_compile() {
        on_small_stack(|| {
            for text in hostile_texts() {
                let started = Instant::now();
                let outcome = Expression::compile(&text);
                assert!(
                    matches!(outcome, Err(ExpressionError::Invalid(_))),
                    "{}: {outcome:?}",
                    &text[..40]
                );
                assert!(
                    started.elapsed() < Duration::from_secs(1),
                    "{}",
                    &text[..40]
                );
            }
        });
    }

    /// Cheap to compile, explosive to evaluate, with the data each runs on.
    fn hostile_evaluations() -> Vec<(String, Value)> {
        let d30 = doubling(30);
        let eight = format!("[{}@]", "@,".repeat(7));
        let shared_big = format!("s | {eight} | {eight}[] | {eight}[]");
        let mut cases: Vec<(String, Value)> = [
            d30.clone(),
            format!("{d30} | @ == @"),
            format!("{d30} | @ != `1`"),
            format!("{d30} | to_string(@)"),
            format!("{d30} | contains(@, @)"),
            format!("{d30} | contains(@, `1`)"),
            format!("{d30} | sort_by(@, &to_string(@))"),
            format!("{d30} | map(&[@,@], @)"),
            format!("{d30} | [@][?@ == @]"),
            format!("{d30} | max_by(@, &length(to_string(@)))"),
            format!("{d30} | [*][*][*][*][*][*][*][*][*][*][*][*][*][*][*][*][*][*][*][*]"),
            "[@,@][]".repeat(40),
            format!("`1`{}", " | [@,@][]".repeat(40)),
            wide_pipes(),
            deep_pipes(""),
            deep_pipes(" | @ == @"),
            deep_pipes(" | to_string(@)"),
            deep_pipes(" | contains([@], @)"),
        ]
        .into_iter()
        .map(|text| (text, json!({"a": 1})))
        .collect();
        for text in [
            format!("{shared_big} | join('', @)"),
            format!("{shared_big} | join(@[0], @)"),
            format!("{shared_big} | sort(@)"),
            format!("{shared_big} | max(@)"),
            format!("{shared_big} | sort_by(@, &@)"),
            format!("{shared_big} | min_by(@, &@)"),
            format!("{shared_big} | @ == @"),
            format!("{shared_big} | contains(@, 'y')"),
            format!("{shared_big} | to_string(@)"),
            format!("{shared_big} | [*].length(@)"),
            format!("{shared_big} | [*].keys({{a: @}})"),
            shared_big.clone(),
        ] {
            cases.push((text, big_string()));
        }
        for text in [
            "[*].[@,@,@,@,@,@,@,@,@,@]",
            "[?@ == @]",
            "sort(@)",
            "sort_by(@, &@)",
            "map(&[@, @, @, @, @, @, @, @], @)",
            "[*].to_string(@)",
            "[*].contains(`[0,0,0,0,0,0,0,0,0,0]`, @)",
            "[*].length(`[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]`)",
            "[*].&[@, @, @, @, @, @, @, @, @, @, @, @, @, @, @, @]",
            "[*].map(&@, [@, @, @, @, @, @, @, @, @, @, @, @, @, @, @])",
        ] {
            cases.push((text.to_owned(), big_array()));
        }
        cases
    }

    #[test]
    fn refuses_hostile_evaluations_quickly() {
        let cases = hostile_evaluations();
        on_small_stack(|| {
            for (text, data) in &cases {
                let started = Instant::now();
                let outcome = eval(text, data);
                let label = &text[..text.len().min(60)];
                assert!(
                    matches!(
                        outcome,
                        Err(ExpressionError::Invalid(_) | ExpressionError::TooExpensive(_))
                    ),
                    "{label}: {outcome:?}"
                );
                assert!(started.elapsed() < Duration::from_secs(2), "{label}");
            }
        });
        // Cheap however big the structure: the top-level array has two elements.
        assert_eq!(
            eval(&format!("{} | length(@)", doubling(30)), &json!(null)),
            Ok(json!(2))
        );
    }

    /// Every case of the JMESPath compliance suite shipped with the crate.
    fn compliance_files() -> Vec<PathBuf> {
        let cargo_home = std::env::var_os("CARGO_HOME").map_or_else(
            || PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cargo"),
            PathBuf::from,
        );
        let registries = cargo_home.join("registry").join("src");
        let suite = std::fs::read_dir(&registries)
            .into_iter()
            .flatten()
            .flat_map(|registry| std::fs::read_dir(registry.ok()?.path()).ok())
            .flatten()
            .filter_map(|entry| Some(entry.ok()?.path()))
            .find(|dir| {
                dir.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("jmespath-0.5."))
            })
            .unwrap_or_else(|| {
                panic!(
                    "no jmespath-0.5.* under {}: run `cargo fetch`",
                    registries.display()
                )
            })
            .join("tests")
            .join("compliance");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&suite)
            .expect("compliance suite readable")
            .map(|entry| entry.expect("directory entry").path())
            .collect();
        files.sort();
        files
    }

    /// The compliance suite's name for the kind of an error.
    fn error_kind(error: &ExpressionError) -> &'static str {
        match error {
            ExpressionError::Invalid(_) => "syntax",
            ExpressionError::Runtime(m) if m.contains("arguments") => "invalid-arity",
            ExpressionError::Runtime(m)
                if m.contains("expects type") || m.contains("must return") =>
            {
                "invalid-type"
            }
            ExpressionError::Runtime(m) if m.contains("slice step") => "invalid-value",
            ExpressionError::Runtime(m) if m.contains("unknown function") => "unknown-function",
            ExpressionError::Runtime(_) => "other runtime error",
            ExpressionError::TooExpensive(_) => "too expensive",
        }
    }

    fn refused_by_limits(error: &ExpressionError) -> bool {
        match error {
            ExpressionError::Invalid(message) => message.contains("the limit is"),
            ExpressionError::TooExpensive(_) => true,
            ExpressionError::Runtime(_) => false,
        }
    }

    #[test]
    fn passes_the_jmespath_compliance_suite() {
        let (mut passed, mut benches) = (0, 0);
        let (mut refused, mut failures) = (Vec::new(), Vec::new());
        for file in compliance_files() {
            let text = std::fs::read_to_string(&file).expect("suite readable");
            let suites: Vec<Value> = serde_json::from_str(&text).expect("suite is JSON");
            for suite in &suites {
                for case in suite["cases"].as_array().expect("cases") {
                    let text = case["expression"].as_str().expect("expression");
                    let outcome = on_small_stack(|| eval(text, &suite["given"]));
                    let name = format!("{}: {text}", file.display());
                    match (&outcome, case.get("result"), case.get("error")) {
                        (Err(error), _, _) if refused_by_limits(error) => refused.push(name),
                        _ if case.get("bench").is_some() => benches += 1,
                        (Ok(actual), Some(expected), _)
                            if Variable::try_from(actual).ok()
                                == Variable::try_from(expected).ok() =>
                        {
                            passed += 1
                        }
                        (Err(error), _, Some(kind)) if kind == error_kind(error) => passed += 1,
                        _ => failures.push(format!("{name}\n  expected {case}\n  got {outcome:?}")),
                    }
                }
            }
        }
        println!(
            "compliance: {passed} passed, {} refused by limits, {benches} benchmarks run, {} failed",
            refused.len(),
            failures.len()
        );
        for name in &refused {
            println!("refused: {name}");
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(passed > 600, "only {passed} cases ran");
    }

    /// Pipeline-like expressions, with the crate's own interpreter as the oracle.
    const REALISTIC: &[&str] = &[
        "{id: event.order_id, skus: event.lines[].sku}",
        "event.lines[?qty > `2`].sku",
        "event.lines[?qty > `2` && price < `50`].{sku: sku, qty: qty}",
        "event.lines[?contains(tags, 'fragile')] | [].{sku: sku, where: warehouse.id}",
        "event.lines[?warehouse.id == 'WH-1'].name | [0]",
        "event.lines[?!contains(tags, 'gift')].sku | length(@)",
        "event.lines[*].tags[]",
        "event.lines[].tags[] | sort(@)",
        "event.lines[:5].sku",
        "event.lines[::-7].sku",
        "event.lines[-3:].price",
        "event.lines[1:10:3]",
        "event.lines[0]",
        "event.lines[-1].warehouse",
        "event.lines[*].[sku, qty]",
        "[event.order_id, event.customer.id, event.missing]",
        "event.customer.tier || 'standard'",
        "event.paid && event.customer.name",
        "!event.paid",
        "event.notes == null",
        "event.lines[0] == event.lines[0]",
        "event.lines[0] != event.lines[1]",
        "event.total > `1000`",
        "event.customer.*",
        "event.*.name",
        "sort_by(event.lines, &price)[-1].sku",
        "sort_by(event.lines, &warehouse.id)[*].sku",
        "max_by(event.lines, &price).sku",
        "min_by(event.lines, &sku).name",
        "map(&{sku: sku, zone: warehouse.zone}, event.lines)",
        "map(&to_string(qty), event.lines)",
        "join(', ', event.lines[:4].sku)",
        "sum(event.lines[].price)",
        "avg(event.lines[].qty)",
        "max(event.lines[].price)",
        "min(event.lines[].sku)",
        "abs(`-3`)",
        "ceil(event.total)",
        "floor(event.total)",
        "keys(event.customer)",
        "values(event.customer)",
        "merge(event.customer, {vip: `true`})",
        "not_null(event.missing, event.notes, event.order_id)",
        "reverse(event.order_id)",
        "reverse(event.lines[:3].sku)",
        "starts_with(event.order_id, 'ord-')",
        "ends_with(event.customer.email, '.com')",
        "to_array(event.order_id)",
        "to_number('42.5')",
        "to_string(event.customer)",
        "length(to_string(@))",
        "type(event.lines)",
        "contains(event.order_id, '123')",
        "contains(event.lines[].sku, 'SKU-0007')",
        "event.lines[?tags[0] == 'gift' || qty == `5`].sku",
        "event.lines | [?price > `100`] | length(@)",
        "`{\"static\": [1, 2]}`",
        "'literal'",
        "event",
        "length(event.total)",
        "event.lines[::0]",
        "unknown_function(@)",
        "sort_by(event.lines, &tags)",
        "max_by(event.lines, &tags)",
        "map(&sku, event.order_id)",
        "join(', ', event.lines[].qty)",
        "contains(`1`, `1`)",
        "to_string(&sku)",
    ];

    #[test]
    fn agrees_with_the_crate_on_realistic_expressions() {
        let data = order_event();
        for text in REALISTIC {
            let ours = eval(text, &data);
            let theirs = jmespath::compile(text)
                .expect("compiles")
                .search(&data)
                .map(|result| serde_json::to_value(&*result).expect("writable"));
            match (&ours, &theirs) {
                (Ok(ours), Ok(theirs)) => assert_eq!(ours, theirs, "{text}"),
                (Err(ExpressionError::Runtime(_)), Err(_)) => {}
                _ => panic!("{text}: ours {ours:?}, theirs {theirs:?}"),
            }
        }
    }
}
