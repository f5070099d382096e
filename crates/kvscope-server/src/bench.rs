pub struct BenchArgs; pub struct BenchReport; pub fn run_bench_serve(_a: BenchArgs) -> anyhow::Result<BenchReport> { todo!() }
