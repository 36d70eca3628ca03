use super::*;

#[test]
fn the_window_rolls() {
    let mut w = SlidingWindow::default();
    let start = Instant::now();
    let window = Duration::from_secs(10);
    for _ in 0..3 {
        assert!(w.take(Some(3), window, start).is_ok());
    }
    assert_eq!(
        w.take(Some(3), window, start + Duration::from_secs(4)),
        Err(Duration::from_secs(6))
    );
    assert!(
        w.take(Some(3), window, start + Duration::from_secs(10))
            .is_ok()
    );
    assert!(w.take(None, window, start).is_ok());
}
