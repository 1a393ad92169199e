//! Adam on the pixels.

use crate::error::{Error, Result};
use crate::gemm::Real;

/// Adam (Kingma & Ba 2015) with bias correction, as `torch.optim.Adam` computes it.
#[derive(Debug, Clone)]
pub struct Adam<T = f32> {
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    step: u32,
    m: Vec<T>,
    v: Vec<T>,
}

impl<T: Real> Adam<T> {
    /// A fresh optimiser; rejects settings outside their meaningful ranges.
    pub fn new(learning_rate: f64, beta1: f64, beta2: f64, epsilon: f64) -> Result<Self> {
        if !(learning_rate.is_finite() && learning_rate > 0.0) {
            return Err(Error::Config(format!(
                "learning rate {learning_rate} must be > 0"
            )));
        }
        for (name, b) in [("beta1", beta1), ("beta2", beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(Error::Config(format!("Adam {name} {b} must be in [0, 1)")));
            }
        }
        if !(epsilon.is_finite() && epsilon > 0.0) {
            return Err(Error::Config(format!("Adam epsilon {epsilon} must be > 0")));
        }
        Ok(Adam {
            learning_rate,
            beta1,
            beta2,
            epsilon,
            step: 0,
            m: Vec::new(),
            v: Vec::new(),
        })
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u32 {
        self.step
    }

    /// The moment estimates (first, second), empty before the first step.
    pub fn moments(&self) -> (&[T], &[T]) {
        (&self.m, &self.v)
    }

    /// Puts back the state of a run that took `steps` steps with moments `m` and `v` (from
    /// [`Adam::steps`] and [`Adam::moments`]): the next step is bitwise the one that run would
    /// have taken.
    pub fn restore(&mut self, steps: u32, m: Vec<T>, v: Vec<T>) -> Result<()> {
        if m.len() != v.len() || (steps > 0) == m.is_empty() {
            return Err(Error::Shape(format!(
                "Adam state: {steps} steps with moments of lengths {} and {}",
                m.len(),
                v.len()
            )));
        }
        (self.step, self.m, self.v) = (steps, m, v);
        Ok(())
    }

    /// One update of `x` against `grad` (same length every call).
    pub fn step(&mut self, x: &mut [T], grad: &[T]) {
        assert_eq!(x.len(), grad.len());
        if self.m.len() != x.len() {
            self.m = vec![T::zero(); x.len()];
            self.v = vec![T::zero(); x.len()];
            self.step = 0;
        }
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (T::from_f64(self.beta1), T::from_f64(self.beta2));
        let (one_b1, one_b2) = (T::one() - b1, T::one() - b2);
        let step_size = T::from_f64(self.learning_rate / (1.0 - self.beta1.powi(t)));
        let bias2_sqrt = T::from_f64((1.0 - self.beta2.powi(t)).sqrt());
        let eps = T::from_f64(self.epsilon);
        for (((x, &g), m), v) in x.iter_mut().zip(grad).zip(&mut self.m).zip(&mut self.v) {
            *m = b1 * *m + one_b1 * g;
            *v = b2 * *v + one_b2 * g * g;
            *x -= step_size * *m / (v.sqrt() / bias2_sqrt + eps);
        }
    }
}

impl<T: Real> Default for Adam<T> {
    /// The seed's settings: learning rate 2.0 on net-space pixels, betas (0.9, 0.999), eps 1e-8.
    fn default() -> Self {
        Adam::new(2.0, 0.9, 0.999, 1e-8).expect("default Adam settings are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_step_moves_each_coordinate_by_the_learning_rate() {
        // With bias correction the first Adam step is lr * sign(g) (up to epsilon).
        let mut adam = Adam::<f64>::new(0.5, 0.9, 0.999, 1e-12).unwrap();
        let mut x = vec![1.0, -2.0, 3.0];
        adam.step(&mut x, &[4.0, -0.001, 0.0]);
        assert!((x[0] - 0.5).abs() < 1e-9);
        assert!((x[1] - -1.5).abs() < 1e-6);
        assert_eq!(x[2], 3.0);
    }

    #[test]
    fn minimises_a_quadratic() {
        let mut adam = Adam::<f64>::new(0.1, 0.9, 0.999, 1e-8).unwrap();
        let mut x = vec![5.0, -3.0];
        for _ in 0..500 {
            let g: Vec<f64> = x.iter().map(|v| 2.0 * v).collect();
            adam.step(&mut x, &g);
        }
        assert!(x.iter().all(|v| v.abs() < 1e-2), "{x:?}");
    }

    #[test]
    fn a_restored_state_continues_bitwise() {
        let grad = |x: &[f32]| -> Vec<f32> { x.iter().map(|v| 2.0 * v - 1.0).collect() };
        let mut whole = Adam::<f32>::default();
        let mut x = vec![5.0f32, -3.0, 0.25];
        let mut saved = None;
        for k in 0..20 {
            if k == 7 {
                let (m, v) = whole.moments();
                saved = Some((whole.steps(), m.to_vec(), v.to_vec(), x.clone()));
            }
            let g = grad(&x);
            whole.step(&mut x, &g);
        }
        let (steps, m, v, mut y) = saved.unwrap();
        let mut resumed = Adam::<f32>::default();
        resumed.restore(steps, m, v).unwrap();
        for _ in 7..20 {
            let g = grad(&y);
            resumed.step(&mut y, &g);
        }
        assert!(x == y);
        assert!(resumed.restore(3, vec![0.0; 2], vec![0.0; 3]).is_err());
        assert!(resumed.restore(3, Vec::new(), Vec::new()).is_err());
    }

    #[test]
    fn rejects_bad_settings() {
        assert!(Adam::<f32>::new(0.0, 0.9, 0.999, 1e-8).is_err());
        assert!(Adam::<f32>::new(1.0, 1.0, 0.999, 1e-8).is_err());
        assert!(Adam::<f32>::new(1.0, 0.9, 0.999, -1.0).is_err());
    }
}
