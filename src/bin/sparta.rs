fn main() {
    println!("sparta {}", env!("CARGO_PKG_VERSION"));
}
