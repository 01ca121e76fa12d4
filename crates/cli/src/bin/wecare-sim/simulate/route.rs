//! Plausible driving: random waypoints inside a circular area, driven at a
//! speed drawn per leg (5–25 m/s), one [`Fix`] per tick.

use wecare_client::Fix;

/// Metres per degree of latitude (and of longitude at the equator).
const METRES_PER_DEGREE: f64 = 111_320.0;
/// Slowest and fastest leg speed, m/s.
const SPEED_RANGE: (f64, f64) = (5.0, 25.0);

/// A circle on the map drivers stay inside.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Area {
    pub(crate) lat: f64,
    pub(crate) lng: f64,
    pub(crate) radius_km: f64,
}

impl Area {
    /// Bangkok, around Democracy Monument, ~15 km.
    pub(crate) const BANGKOK: Area = Area { lat: 13.7563, lng: 100.5018, radius_km: 15.0 };

    /// `bangkok` or `LAT,LNG,RADIUS_KM`.
    pub(crate) fn parse(s: &str) -> Result<Area, String> {
        if s.eq_ignore_ascii_case("bangkok") {
            return Ok(Area::BANGKOK);
        }
        let parts: Vec<f64> = s
            .split(',')
            .map(|p| p.trim().parse::<f64>().map_err(|_| format!("{p:?} is not a number")))
            .collect::<Result<_, _>>()?;
        let [lat, lng, radius_km] = parts[..] else {
            return Err("expected `bangkok` or LAT,LNG,RADIUS_KM".to_owned());
        };
        if !(-85.0..=85.0).contains(&lat) || !(-180.0..=180.0).contains(&lng) {
            return Err("centre out of range (lat −85…85, lng −180…180)".to_owned());
        }
        if !(radius_km.is_finite() && radius_km > 0.0 && radius_km <= 500.0) {
            return Err("radius must be in (0, 500] km".to_owned());
        }
        Ok(Area { lat, lng, radius_km })
    }

    /// A uniformly random point inside the circle.
    fn random_point(&self, rng: &mut Rng) -> (f64, f64) {
        let r = self.radius_km * 1000.0 * rng.unit().sqrt();
        let theta = rng.unit() * std::f64::consts::TAU;
        offset(self.lat, self.lng, r * theta.cos(), r * theta.sin())
    }
}

/// `(lat, lng)` moved `north` and `east` metres (equirectangular; fine
/// for tens of km).
fn offset(lat: f64, lng: f64, north: f64, east: f64) -> (f64, f64) {
    let lat2 = lat + north / METRES_PER_DEGREE;
    let lng2 = lng + east / (METRES_PER_DEGREE * lat.to_radians().cos());
    (lat2, lng2)
}

/// Metres north and east from `a` to `b`.
fn delta(a: (f64, f64), b: (f64, f64)) -> (f64, f64) {
    let north = (b.0 - a.0) * METRES_PER_DEGREE;
    let east = (b.1 - a.1) * METRES_PER_DEGREE * a.0.to_radians().cos();
    (north, east)
}

/// splitmix64: small, seedable, good enough for simulated traffic.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One vehicle's route: where it is, where it heads, how fast.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    area: Area,
    rng: Rng,
    position: (f64, f64),
    waypoint: (f64, f64),
    speed: f64,
    heading: f64,
}

impl Route {
    pub(crate) fn new(area: Area, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let position = area.random_point(&mut rng);
        let waypoint = area.random_point(&mut rng);
        let speed = leg_speed(&mut rng);
        let mut route = Route { area, rng, position, waypoint, speed, heading: 0.0 };
        route.heading = route.bearing();
        route
    }

    fn bearing(&self) -> f64 {
        let (north, east) = delta(self.position, self.waypoint);
        east.atan2(north).to_degrees().rem_euclid(360.0)
    }

    /// Drives for `dt` seconds and returns the fix taken there.
    pub(crate) fn advance(&mut self, dt: f64) -> Fix {
        let mut budget = self.speed * dt;
        // Bounded: a leg shorter than one tick's travel just starts the next.
        for _ in 0..8 {
            if budget <= 0.0 {
                break;
            }
            let (north, east) = delta(self.position, self.waypoint);
            let left = north.hypot(east);
            if left <= budget {
                self.position = self.waypoint;
                budget -= left;
                self.waypoint = self.area.random_point(&mut self.rng);
                self.speed = leg_speed(&mut self.rng);
            } else {
                let k = budget / left;
                self.position = offset(self.position.0, self.position.1, north * k, east * k);
                budget = 0.0;
            }
            self.heading = self.bearing();
        }
        let mut fix = Fix::new(self.position.0, self.position.1);
        fix.heading = Some((self.heading * 10.0).round() / 10.0 % 360.0);
        fix.speed = Some((self.speed * 10.0).round() / 10.0);
        fix.accuracy = Some(5.0 + (self.rng.unit() * 10.0).round());
        fix
    }
}

fn leg_speed(rng: &mut Rng) -> f64 {
    SPEED_RANGE.0 + rng.unit() * (SPEED_RANGE.1 - SPEED_RANGE.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
        let (n, e) = delta(a, b);
        n.hypot(e) / 1000.0
    }

    #[test]
    fn areas_parse() {
        assert_eq!(Area::parse("Bangkok"), Ok(Area::BANGKOK));
        assert_eq!(Area::parse("18.79, 98.98, 5"), Ok(Area { lat: 18.79, lng: 98.98, radius_km: 5.0 }));
        for bad in ["", "1,2", "1,2,3,4", "x,1,1", "95,0,1", "0,0,0", "0,0,NaN"] {
            assert!(Area::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn routes_stay_inside_the_area_at_plausible_speeds() {
        let area = Area::BANGKOK;
        let mut route = Route::new(area, 7);
        let mut last = route.position;
        for _ in 0..20_000 {
            let fix = route.advance(0.5);
            let here = (fix.lat, fix.lng);
            assert!(distance_km((area.lat, area.lng), here) <= area.radius_km * 1.001);
            let metres = distance_km(last, here) * 1000.0;
            assert!(metres <= 25.0 * 0.5 + 0.01, "moved {metres} m in 0.5 s");
            let speed = fix.speed.unwrap();
            assert!((5.0..=25.0).contains(&speed), "{speed}");
            assert!((0.0..360.0).contains(&fix.heading.unwrap()));
            last = here;
        }
    }

    #[test]
    fn the_same_seed_drives_the_same_route() {
        let a: Vec<_> = (0..10)
            .map({
                let mut r = Route::new(Area::BANGKOK, 42);
                move |_| r.advance(1.0).lat
            })
            .collect();
        let b: Vec<_> = (0..10)
            .map({
                let mut r = Route::new(Area::BANGKOK, 42);
                move |_| r.advance(1.0).lat
            })
            .collect();
        assert_eq!(a, b);
    }
}
